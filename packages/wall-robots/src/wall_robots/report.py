"""Evaluation report files: ``eval.md`` (per-task table), ``eval.json`` (every episode with its seed, the
action-check and safety counters) and PNG plots of success and of predicted chunks vs executed actions."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .rollout import EvalReport

__all__ = ["write_report"]
logger = logging.getLogger(__name__)


def write_report(
    report: EvalReport,
    out_dir: str | Path,
    title: str = "Closed-loop evaluation",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``eval.md`` (per-task table), ``eval.json`` (every episode with its seed) and PNG plots.

    ``report``: from :func:`wall_robots.evaluate`; ``out_dir`` is created. ``extra``: more JSON-able entries
    for ``eval.json`` (e.g. a policy's own counters), also listed in ``eval.md``; they may not replace the
    report's keys. Returns the path of ``eval.md``.
    """
    out = Path(out_dir)
    body: dict[str, Any] = {
        "per_task": report.per_task(),
        "episodes": [asdict(e) for e in report.episodes],
        "action_checks": report.action_checks,
        "safety": report.safety,
    }
    clash = sorted(set(extra or {}) & set(body))
    if clash:
        raise ValueError(f"extra report entries {clash} would replace the report's own; rename them")
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps({**body, **(extra or {})}, indent=2))
    md = [f"# {title}", "", report.table(), "", *[f"- {k}: {v}" for k, v in (extra or {}).items()]]
    _plots(report, out, md)
    (out / "eval.md").write_text("\n".join(md) + "\n")
    return out / "eval.md"


def _plots(report: EvalReport, out: Path, md: list[str]) -> None:
    """``success.png`` and one ``trajectory_<task>.png`` per task (predicted chunks vs executed actions) in
    ``out``, their image links added to the markdown lines ``md``; only a warning without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing (pip install 'wall-robots[plot]'): no plots written")
        return
    per = report.per_task()
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(per), 3))
    ax.bar(list(per), [v["success_rate"] for v in per.values()], color="tab:green")
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=100)
    plt.close(fig)
    for task, traj in report.trajectories.items():
        ex = np.asarray(traj["executed"])
        if ex.size == 0:
            continue
        dims = min(ex.shape[1], 4)
        fig, axes = plt.subplots(dims, 1, figsize=(7, 1.6 * dims), sharex=True)
        for d, ax in enumerate(np.atleast_1d(axes)):
            ax.plot(ex[:, d], "k-", lw=1.5, label="executed")
            for t0, chunk in traj["predicted"]:
                c = np.asarray(chunk)
                ax.plot(range(t0, t0 + len(c)), c[:, d], "-", color="tab:blue", alpha=0.3, lw=0.8)
            ax.set_ylabel(f"a[{d}]")
        np.atleast_1d(axes)[0].set_title(f"{task}: predicted chunks (blue) vs executed (black)")
        fig.tight_layout()
        fig.savefig(out / f"trajectory_{task}.png", dpi=100)
        plt.close(fig)
        md.append(f"![{task}](trajectory_{task}.png)")
    md.insert(3, "![success](success.png)\n")
