"""Report of an asynchronous-execution sweep (strategy x inference delay): ``realtime.json``, ``realtime.md``
(table) and ``realtime.png`` (success, jerk and chunk-boundary jump against the delay, one line per strategy)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .rollout import EvalReport

__all__ = ["summarise_sweep", "sweep_row", "write_realtime_report"]
logger = logging.getLogger(__name__)
METRICS = (("success_rate", "success"), ("mean_jerk", "jerk |Δ²a|"), ("mean_boundary_jump", "boundary jump"))


def sweep_row(report: EvalReport, strategy: str, delay: int, seed: int) -> dict[str, Any]:
    """One run of the sweep -> ``{strategy, delay, seed, success_rate, mean_jerk, mean_boundary_jump,
    per_task}`` (jerk and jump: means over the episodes that have them, None when none has)."""

    def mean(attr: str) -> float | None:
        vals = [v for v in (getattr(e, attr) for e in report.episodes) if v is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "strategy": strategy,
        "delay": int(delay),
        "seed": int(seed),
        "success_rate": report.success_rate,
        "mean_jerk": mean("jerk"),
        "mean_boundary_jump": mean("boundary_jump"),
        "episodes": len(report.episodes),
        "per_task": report.per_task(),
    }


def summarise_sweep(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`sweep_row` -> one entry per (strategy, delay): mean and std over seeds of each metric."""
    out = []
    for key in dict.fromkeys((r["strategy"], r["delay"]) for r in rows):
        runs = [r for r in rows if (r["strategy"], r["delay"]) == key]
        entry: dict[str, Any] = {"strategy": key[0], "delay": key[1], "seeds": len(runs)}
        for m, _ in METRICS:
            vals = [r[m] for r in runs if r[m] is not None]
            entry[m] = float(np.mean(vals)) if vals else None
            entry[m + "_std"] = float(np.std(vals)) if vals else None
        out.append(entry)
    return out


def _fmt(v: float | None, sd: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.0f}±{100 * (sd or 0):.0f}%" if pct else f"{v:.3g}±{sd or 0:.2g}"


def write_realtime_report(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, title: str = "Asynchronous execution"
) -> Path:
    """Write ``realtime.json`` (every run), ``realtime.md`` (table: strategy, d, success, jerk, boundary jump,
    mean ± std over seeds) and ``realtime.png`` (needs matplotlib, ``wall-robots[plot]``). Returns the .md path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise_sweep(rows)
    (out / "realtime.json").write_text(json.dumps({"runs": list(rows), "summary": summary}, indent=2))
    md = [
        f"# {title}",
        "",
        "| strategy | delay d | seeds | success | jerk | boundary jump |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        md.append(
            f"| {s['strategy']} | {s['delay']} | {s['seeds']} | {_fmt(s['success_rate'], s['success_rate_std'], True)} "
            f"| {_fmt(s['mean_jerk'], s['mean_jerk_std'])} | {_fmt(s['mean_boundary_jump'], s['mean_boundary_jump_std'])} |"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing (pip install 'wall-robots[plot]'): no plots written")
    else:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3))
        for strategy in dict.fromkeys(s["strategy"] for s in summary):
            pts = [s for s in summary if s["strategy"] == strategy]
            for ax, (m, label) in zip(axes, METRICS):
                xy = [(s["delay"], s[m], s[m + "_std"]) for s in pts if s[m] is not None]
                if xy:
                    x, y, e = (np.array(v, dtype=float) for v in zip(*xy))
                    ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=strategy)
                ax.set_xlabel("inference delay d (control steps)")
                ax.set_ylabel(label)
        axes[0].set_ylim(0, 1)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(out / "realtime.png", dpi=100)
        plt.close(fig)
        md += ["", "![success, jerk and boundary jump against the delay](realtime.png)"]
    (out / "realtime.md").write_text("\n".join(md) + "\n")
    return out / "realtime.md"
