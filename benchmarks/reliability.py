"""Reliability suite (issue 19): replay a catalogue of bad inputs across datasets, checkpoints, policies, the
policy server and robots, classify each outcome (clear error, crash, silent wrong result, data lost; see
``reliability_cases``) and print one JSON line + the table. Exit status 1 unless crashes, silent wrong results
and data lost are all 0.

``python benchmarks/reliability.py [--quick] [--family F ...] [--list] [-v]``; ``--quick`` replays every 4th
case of each family (the pytest subset); ``nox -s reliability`` runs the whole catalogue.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from reliability_cases import Case  # noqa: E402

FAMILIES = ("dataset", "checkpoint", "policy", "server", "robot")
COLUMNS = ("clear", "harmless", "crash", "silent", "lost")


def collect(work: Path, families: tuple[str, ...]) -> list[Case]:
    """The catalogue of the chosen families (fixtures written under ``work``)."""
    from reliability_cases import checkpoints, datasets, policies, robots, serving

    makers = {"dataset": datasets.cases, "checkpoint": checkpoints.cases, "policy": policies.cases,
              "server": serving.cases, "robot": robots.cases}  # fmt: skip
    out: list[Case] = []
    for fam in families:
        (work / fam).mkdir(parents=True, exist_ok=True)
        out += makers[fam](work / fam)
    names = [(c.family, c.name) for c in out]
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise ValueError(f"duplicate case names {dup[:5]}")
    return out


def replay(cases: list[Case], verbose: bool = False) -> list[dict[str, Any]]:
    """Run every case; an exception escaping a case's own harness is a crash of that case."""
    rows = []
    for case in cases:
        t = time.perf_counter()
        try:
            outcome, detail = case.run()
        except Exception as e:  # the harness itself must not stop the suite
            outcome, detail = "crash", f"harness: {type(e).__name__}: {e}"
        rows.append({"family": case.family, "name": case.name, "outcome": outcome, "detail": detail,
                     "s": round(time.perf_counter() - t, 3)})  # fmt: skip
        if verbose or outcome != "clear":
            print(f"[{outcome:6}] {case.family:10} {case.name}: {detail}", file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Per family and total: inputs tried, clear errors, no effect (damage nothing reads), crashes, silent wrong,
    data lost."""
    head = f"{'family':12}{'inputs':>8}{'clear':>8}{'no effect':>11}{'crashes':>9}{'silent':>8}{'lost':>6}"
    lines, summary = [head, "-" * len(head)], {}
    for fam in [*FAMILIES, "total"]:
        sel = [r for r in rows if fam in ("total", r["family"])]
        if not sel:
            continue
        c = Counter(r["outcome"] for r in sel)
        summary[fam] = {"inputs": len(sel), **{k: c.get(k, 0) for k in COLUMNS}}
        s = summary[fam]
        lines.append(
            f"{fam:12}{s['inputs']:>8}{s['clear']:>8}{s['harmless']:>11}{s['crash']:>9}{s['silent']:>8}"
            f"{s['lost']:>6}"
        )
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the suite; returns the summary (``{"family" | "total": {inputs, clear, crash, silent, lost}}``)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="every 4th case of each family")
    ap.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--list", action="store_true", help="print the case names and stop")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case, not only the bad ones")
    args = ap.parse_args(argv)
    root_logger, level = logging.getLogger(), logging.getLogger().level
    root_logger.setLevel(logging.CRITICAL)  # the cases provoke warnings by design; restored below
    try:
        return _run(args)
    finally:
        root_logger.setLevel(level)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wall-reliability-") as tmp:
        cases = collect(Path(tmp), tuple(args.family))
        catalogue = len(cases)
        if args.quick:
            cases = [c for f in args.family for c in [x for x in cases if x.family == f][::4]]
        if args.list:
            print("\n".join(f"{c.family:10} {c.name}" for c in cases))
            return {}
        rows = replay(cases, args.verbose)
    summary, text = table(rows)
    result = {"benchmark": "reliability", "quick": args.quick, "catalogue": catalogue,
              "seconds": round(time.perf_counter() - t0, 1), "summary": summary}  # fmt: skip
    print(json.dumps(result))
    print(text)
    return result


if __name__ == "__main__":
    res = main()
    total = res.get("summary", {}).get("total", {})
    sys.exit(1 if any(total.get(k, 0) for k in ("crash", "silent", "lost")) else 0)
