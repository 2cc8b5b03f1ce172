"""Asynchronous execution under inference delay: naive chunk switching vs temporal ensembling vs real-time
chunking (RTC) at d in {0, 2, 4, 8} control steps, on the embedded default's MetaWorld tasks (issue 18).

Each run executes a chunk of H = 16 every ``--execute-steps`` (8) steps; the next chunk's inference starts from
the observation of that step and arrives d steps later while the robot keeps executing the current chunk
(:class:`wall_robots.AsyncChunker`). Measured per (strategy, d, seed): success rate, mean jerk ``||Δ²a||`` and
mean action jump ``||a_t - a_{t-1}||`` at the steps where a new chunk took over, on held-out layouts (checked
disjoint from the demos). Also: ms per chunk with and without RTC guidance. Prints one JSON line and a table;
``--out`` gets ``realtime.{json,md,png}`` (plots of the three metrics against d).

The policy: ``--policy DIR [DIR ...]`` (one per training seed; evaluation seed i uses policy i mod n), else the
embedded default's small policy is trained first (``wall demo`` settings, ~25 min on 2 idle cores).

Full run (3 trained policies x 3 strategies x 4 delays x 4 tasks x 20 episodes = 2,880 episodes; several hours
on 2 cores, RTC chunks cost ~3x a plain chunk):

    MUJOCO_GL=osmesa python benchmarks/rtc.py --seeds 0 1 2 --episodes 20 --results \
        --policy /work/bench/policy/flow-only/seed{0,1,2}/train/policy --out runs/bench_rtc
    MUJOCO_GL=osmesa python benchmarks/rtc.py --quick --policy DIR   # smoke: 2 tasks, 1 episode, 40 steps

Finished (seed, strategy, d) cells are kept under ``OUT/cells`` and skipped on a rerun; ``--worker K --workers
N`` splits the cells over N processes (run the same command once more afterwards to write the table).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, machine_info

TASKS = ["reach-v3", "button-press-topdown-v3", "drawer-close-v3", "push-v3"]
STRATEGIES = {"naive": "chunk", "ensemble": "ensemble", "rtc": "rtc"}  # benchmark name -> evaluate(mode=)


def train_default(out: Path, quick: bool) -> tuple[Path, Path]:
    """Train the embedded default's small policy (no evaluation to speak of); returns (policy dir, demo root)."""
    from wall_core.demo import DemoConfig, run_demo

    kw: dict[str, Any] = dict(out=str(out / "train_default"), eval_episodes=1)
    cfg = DemoConfig.quick(**kw) if quick else DemoConfig(**kw)
    cfg.record_videos = False
    run_demo(cfg)
    return Path(cfg.out) / "train" / "policy", Path(cfg.out) / "data" / "metaworld"


def chunk_ms(policy: Any, env_factory: Any, task: str, delay: int, repeat: int = 3) -> tuple[float, float]:
    """Median ms of one plain chunk and of one RTC-guided chunk (prefix of H/2 actions, ``delay``)."""
    obs = env_factory(task).reset(variant=0, seed=0)
    chunk = policy.infer(obs)["actions"]
    prefix = chunk[len(chunk) // 2 :]

    def med(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    return med(lambda: policy.infer(obs)), med(lambda: policy.infer(obs, prefix_actions=prefix, delay=delay))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The sweep (this worker's share of the cells, skipping finished ones); returns the JSON result (runs,
    summary, chunk latency) once every cell is done, else None."""
    import wall_robots
    from wall_core import WallPolicy
    from wall_robots.realtime_report import summarise_sweep

    policies = [Path(p) for p in args.policy] if args.policy else []
    data = Path(args.data) if args.data else None
    if not policies:
        p, data = train_default(Path(args.out), args.quick)
        policies = [p]
    up = policies[0].resolve().parents  # benchmarks/policy.py's layout: OUT/ARM/seedN/train/policy, OUT/data
    if data is None and len(up) > 3 and (up[3] / "data" / "metaworld").is_dir():
        data = up[3] / "data" / "metaworld"
    if data is None:
        logging.warning("no --data: held-out layouts are not checked against the demos' layouts")

    def env_factory(task: str) -> Any:
        return wall_robots.MetaWorldEnv(
            task, image_size=args.image_size, max_steps=args.max_steps, layouts="heldout", exclude=data
        )

    cells = [(s, n, d) for s in args.seeds for n in args.strategies for d in args.delays]
    run_cells(args, cells, policies, env_factory)
    missing = [c for c in cells if not cell_path(args.out, *c).exists()]
    if missing:
        logging.info("%d of %d cells still missing (other workers?); rerun the same command when all are done",
                     len(missing), len(cells))  # fmt: skip
        return None
    rows = [json.loads(cell_path(args.out, *c).read_text()) for c in cells]
    policy = WallPolicy.from_pretrained(policies[0], seed=0, guidance_weight=args.beta)
    plain_ms, rtc_ms = chunk_ms(policy, env_factory, args.tasks[0], max(args.delays))
    md = wall_robots.write_realtime_report(rows, args.out, title="Asynchronous execution (benchmarks/rtc.py)")
    logging.info("report: %s", md)
    return {"runs": rows, "summary": summarise_sweep(rows),
            "chunk_ms": {"plain": plain_ms, "rtc": rtc_ms}, "eval_s": sum(r.get("eval_s", 0.0) for r in rows),
            "policies": [str(p) for p in policies]}  # fmt: skip


def run_cells(
    args: argparse.Namespace, cells: list[tuple[int, str, int]], policies: list[Path], env_factory: Any
) -> None:
    """Evaluate this worker's unfinished (seed, strategy, d) cells, writing each to :func:`cell_path`."""
    import wall_robots
    from wall_core import WallPolicy

    mine = [c for i, c in enumerate(cells) if i % args.workers == args.worker]
    loaded: dict[int, Any] = {}
    for seed, name, d in mine:
        path = cell_path(args.out, seed, name, d)
        if path.exists():
            continue  # resumed: this (seed, strategy, d) finished in an earlier run
        i = args.seeds.index(seed)
        if seed not in loaded:
            loaded = {
                seed: WallPolicy.from_pretrained(
                    policies[i % len(policies)], seed=seed, guidance_weight=args.beta
                )
            }
        policy = loaded[seed]
        t_cell = time.perf_counter()
        policy.generator.manual_seed(seed)  # same noise for every (strategy, d): rtc at d=0 == naive
        report = wall_robots.evaluate(
            policy, args.tasks, args.episodes, env_factory, args.execute_steps, STRATEGIES[name],
            max_steps=args.max_steps, seed=1000 + seed, delay=d,
        )  # fmt: skip
        r = {**wall_robots.sweep_row(report, name, d, seed), "eval_s": time.perf_counter() - t_cell}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(r))
        path.with_suffix(".tmp").replace(path)
        logging.info("seed %d %s d=%d: success %.0f%%, jerk %s, jump %s", seed, name, d,
                     100 * r["success_rate"], r["mean_jerk"], r["mean_boundary_jump"])  # fmt: skip


def cell_path(out: str, seed: int, strategy: str, delay: int) -> Path:
    """Where one finished (seed, strategy, d) run is kept, so an interrupted sweep resumes."""
    return Path(out) / "cells" / f"seed{seed}_{strategy}_d{delay}.json"


def table(result: dict[str, Any], tasks: list[str]) -> tuple[list[list[Any]], list[str]]:
    """Rows: strategy, d, seeds, success, jerk, boundary jump (mean ± std over seeds), per-task success."""
    rows = []
    for s in result["summary"]:
        runs = [r for r in result["runs"] if (r["strategy"], r["delay"]) == (s["strategy"], s["delay"])]
        per_task = [f"{100 * np.mean([r['per_task'][t]['success_rate'] for r in runs]):.0f}%" for t in tasks]
        jerk = "-" if s["mean_jerk"] is None else f"{s['mean_jerk']:.3f}±{s['mean_jerk_std']:.3f}"
        jump = (
            "-"
            if s["mean_boundary_jump"] is None
            else f"{s['mean_boundary_jump']:.3f}±{s['mean_boundary_jump_std']:.3f}"
        )
        rows.append([s["strategy"], s["delay"], s["seeds"], f"{100 * s['success_rate']:.0f}±{100 * s['success_rate_std']:.0f}%",
                     jerk, jump, *per_task])  # fmt: skip
    return rows, ["strategy", "d", "seeds", "success", "jerk", "boundary jump", *tasks]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--policy", nargs="+", help="saved WallPolicy folder(s); default: train the embedded default"
    )
    p.add_argument(
        "--data", help="the demos' LeRobot folder (held-out check); default: found next to --policy"
    )
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=20, help="held-out episodes per task")
    p.add_argument("--delays", nargs="+", type=int, default=[0, 2, 4, 8])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--execute-steps", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--beta", type=float, default=5.0, help="RTC guidance-weight clip")
    p.add_argument("--out", default="runs/bench_rtc")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 tasks, 1 seed, 1 episode, 40 steps")
    p.add_argument("--results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    p.add_argument(
        "--worker", type=int, default=0, help="this process's share: cells i with i %% workers == worker"
    )
    p.add_argument("--workers", type=int, default=1, help="processes sharing the sweep (one per core)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.tasks, args.seeds, args.episodes, args.max_steps = args.tasks[:2], args.seeds[:1], 1, 40
    result = run(args)
    if result is None:
        return {}
    rows, header = table(result, args.tasks)
    meta = {"machine": machine_info(), "quick": args.quick, "episodes_per_task": args.episodes,
            "execute_steps": args.execute_steps, "max_steps": args.max_steps, "beta": args.beta}  # fmt: skip
    emit("rtc", {**meta, **result}, rows, header)
    logging.info("chunk ms: plain %.0f, rtc %.0f", result["chunk_ms"]["plain"], result["chunk_ms"]["rtc"])
    if args.results:
        lines = ["", f"## Asynchronous execution (benchmarks/rtc.py, seeds {args.seeds}, {args.episodes} held-out "
                 f"episodes per task{', quick' if args.quick else ''})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        with open(Path(__file__).parent / "RESULTS.md", "a") as f:
            f.write("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
