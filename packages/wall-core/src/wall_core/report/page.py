"""``wall report RUN_DIR``: one self-contained HTML page for a run (demo or eval folder).

Read from RUN_DIR (only ``eval.json`` is required):
- ``eval.json`` or ``eval/eval.json``: ``per_task`` and ``episodes`` (seed, variant, success, steps, ret, video)
  written by :func:`wall_robots.write_report`;
- ``train/history.json`` or ``history.json``: per-step losses (``loss``, terms, ``<dataset>/<term>`` keys);
- ``result.json``: ``gradient_shares``, ``config``, ``timings_s`` (written by the demo);
- ``train/train_config.yaml``: the training config.
Videos are inlined as base64 ``data:`` URIs, so the single HTML file can be moved or mailed.
"""

from __future__ import annotations

import base64
import json
import platform
from dataclasses import dataclass, field
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

from .stats import wilson_interval
from .svg import bar_chart, line_chart

__all__ = ["RunData", "build_report", "library_versions", "load_run"]
LIBRARIES = ["wall-core", "wall-robots", "wall-data", "wall-flow", "wall-tokenizer", "torch", "transformers",
             "lightning", "numpy", "av", "metaworld", "mujoco"]  # fmt: skip
CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.ok{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:320px}video{max-width:520px;display:block}
.grid{display:flex;flex-wrap:wrap;gap:16px}"""


@dataclass
class RunData:
    """Everything the report shows; ``eval`` is the parsed eval.json (``per_task``, ``episodes``)."""

    root: Path
    eval_path: Path
    eval: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    train_config: str = ""


def _first(root: Path, names: list[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; raises FileNotFoundError naming the eval.json paths looked for when there is none."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder {root} does not exist")
    eval_path = _first(root, ["eval.json", "eval/eval.json"])
    if eval_path is None:
        raise FileNotFoundError(
            f"{root / 'eval.json'} (or {root / 'eval' / 'eval.json'}) not found: run `wall eval --out {root}` "
            "or `wall demo --out ...` first"
        )
    ev = json.loads(eval_path.read_text())
    if "episodes" not in ev:
        raise ValueError(
            f"{eval_path} has no 'episodes' list; it was not written by wall_robots.write_report"
        )
    hist_path = _first(root, ["train/history.json", "history.json"])
    res_path = _first(root, ["result.json"])
    cfg_path = _first(root, ["train/train_config.yaml", "train_config.yaml"])
    return RunData(
        root, eval_path, ev,
        json.loads(hist_path.read_text()) if hist_path else [],
        json.loads(res_path.read_text()) if res_path else {},
        cfg_path.read_text() if cfg_path else "",
    )  # fmt: skip


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on ("not installed" where absent) and Python's."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def task_rows(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task (and ``all`` last): successes k, episodes n, rate k/n and its 95 % Wilson interval."""
    tasks = list(dict.fromkeys(e["task"] for e in episodes))
    rows = []
    for name, eps in [*[(t, [e for e in episodes if e["task"] == t]) for t in tasks], ("all", episodes)]:
        k, n = sum(bool(e["success"]) for e in eps), len(eps)
        lo, hi = wilson_interval(k, n)
        rows.append({"task": name, "k": k, "n": n, "rate": k / n, "low": lo, "high": hi})
    return rows


def _success_html(episodes: list[dict[str, Any]]) -> str:
    rows = task_rows(episodes)
    body = "".join(
        f'<tr data-task="{escape(r["task"])}"><td>{escape(r["task"])}</td><td class="k">{r["k"]}</td>'
        f'<td class="n">{r["n"]}</td><td class="rate">{100 * r["rate"]:.1f}%</td>'
        f'<td class="ci">[{100 * r["low"]:.1f}%, {100 * r["high"]:.1f}%]</td></tr>'
        for r in rows
    )
    table = ("<table id='success'><tr><th>task</th><th>successes</th><th>episodes</th><th>success rate</th>"
             f"<th>95% Wilson CI</th></tr>{body}</table>")  # fmt: skip
    chart = bar_chart([(r["task"], r["rate"], r["low"], r["high"]) for r in rows], "success rate (95% CI)")
    return table + chart


def _split_key(key: str, terms: set[str]) -> tuple[str, str] | None:
    """``"metaworld/flow"`` (the trainer's ``dataset/term``; ``term/dataset`` also read) -> (dataset, term)."""
    a, _, b = key.partition("/")
    if b in terms or (b and a not in terms):
        return a, b
    return (b, a) if b else None


def _loss_html(history: list[dict[str, float]]) -> str:
    if not history:
        return "<p>No training history (train/history.json) in this run.</p>"
    steps = [h.get("step", i) for i, h in enumerate(history)]
    keys = list(dict.fromkeys(k for h in history for k in h if k not in ("step", "lr")))
    nan = float("nan")
    terms = {k: (steps, [h.get(k, nan) for h in history]) for k in keys if "/" not in k}
    charts = [line_chart(terms, "loss per term (log scale)", log_y=True)]
    per_ds: dict[str, dict[str, tuple[list, list[float]]]] = {}
    for k in keys:
        split = _split_key(k, set(terms)) if "/" in k else None
        if split is not None:
            per_ds.setdefault(split[0], {})[split[1]] = (steps, [h.get(k, nan) for h in history])
    for ds, series in sorted(per_ds.items()):
        charts.append(line_chart(series, f"loss per term on dataset {ds}", log_y=True))
    if not per_ds:
        charts.append("<p>No per-dataset losses logged (keys <code>dataset/term</code> in history.json).</p>")
    return '<div class="grid">' + "".join(charts) + "</div>"


def _video_tag(ep: dict[str, Any], eval_dir: Path, root: Path) -> str:
    ref = ep.get("video")
    if not ref:
        return ""
    p = Path(ref)
    for cand in (p, eval_dir / p, root / p, eval_dir / "videos" / p.name):
        if cand.is_file():
            data = base64.b64encode(cand.read_bytes()).decode()
            return (f'<video controls muted loop playsinline preload="auto" title="{escape(cand.name)}" '
                    f'src="data:video/mp4;base64,{data}"></video>')  # fmt: skip
    return f"<em>video {escape(ref)} missing</em>"


def _episodes_html(run: RunData) -> str:
    parts = []
    for task in dict.fromkeys(e["task"] for e in run.eval["episodes"]):
        eps = [e for e in run.eval["episodes"] if e["task"] == task]
        rows = "".join(
            f'<tr class="episode" data-task="{escape(task)}" data-seed="{e["seed"]}"><td>{e["seed"]}</td>'
            f'<td>{e.get("variant", "")}</td><td class="{"ok" if e["success"] else "fail"}">'
            f"{'success' if e['success'] else 'failure'}</td><td>{e['steps']}</td><td>{e['ret']:.1f}</td>"
            f"<td>{_video_tag(e, run.eval_path.parent, run.root)}</td></tr>"
            for e in eps
        )
        parts.append(f"<h3>{escape(task)}</h3><table><tr><th>seed</th><th>layout variant</th><th>outcome</th>"
                     f"<th>steps</th><th>return</th><th>rollout video</th></tr>{rows}</table>")  # fmt: skip
    return "".join(parts)


def _shares_html(shares: dict[str, float]) -> str:
    if not shares:
        return "<p>No gradient shares recorded (result.json: gradient_shares).</p>"
    rows = [(k, float(v), float(v), float(v)) for k, v in shares.items() if not k.startswith("norm/")]
    table = "".join(f"<tr><td>{escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in shares.items())
    return bar_chart(rows, "share of the backbone gradient norm") + f"<table id='shares'>{table}</table>"


def render_html(run: RunData) -> str:
    """The report page as one HTML string (videos inlined)."""
    res = run.result
    cfg = json.dumps(res.get("config", {}), indent=2) if res.get("config") else ""
    versions = "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in library_versions().items()
    )
    timings = "".join(f"<li>{escape(k)}: {float(v):.1f}</li>" for k, v in res.get("timings_s", {}).items())
    sections = [
        f"<h1>wall run report: {escape(run.root.resolve().name)}</h1>",
        f"<p>Source: <code>{escape(str(run.eval_path))}</code>; {len(run.eval['episodes'])} episodes.</p>",
        "<h2>Success per task</h2>", _success_html(run.eval["episodes"]),
        "<h2>Training losses</h2>", _loss_html(run.history),
        "<h2>Gradient shares per objective term</h2>", _shares_html(res.get("gradient_shares", {})),
        "<h2>Episodes (seeds, outcomes, rollout videos)</h2>", _episodes_html(run),
        *(["<h2>Timings (s)</h2>", f"<ul>{timings}</ul>"] if timings else []),
        "<h2>Config</h2>", f"<pre id='config'>{escape(cfg or 'no result.json config', quote=False)}</pre>",
        *([f"<h3>train_config.yaml</h3><pre>{escape(run.train_config, quote=False)}</pre>"] if run.train_config else []),
        "<h2>Library versions</h2>", f"<table id='versions'>{versions}</table>",
    ]  # fmt: skip
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>wall report</title>'
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")  # fmt: skip


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) and return its path; see the module docstring for inputs."""
    run = load_run(run_dir)
    path = Path(out) if out is not None else run.root / "report.html"
    path.write_text(render_html(run), encoding="utf-8")
    return path
