"""Does gradient-bridged co-training beat flow matching alone? Same demos, same steps, every arm (issue 15).

Arms (objective weights w_text_ce / w_action_ce / w_flow, bridge), each trained with ``--seeds`` training seeds
on the embedded default's MetaWorld tasks and evaluated closed-loop on ``--episodes`` held-out layouts per task
(ML1 test goals, checked disjoint from the demo layouts):

    flow-only            0   / 0    / 1, full
    discrete-only        0.3 / 1    / 0, full        (token actions)
    all3-full            0.3 / 0.3  / 1, full
    all3-scaled          0.3 / 0.3  / 1, scaled 0.5
    all3-insulated       0.3 / 0.3  / 1, insulated
    disc-0.01 / 0.1 / 0.3  0.3 / w / 1, full
    action_ce+flow       0   / 0.3  / 1, full        (diagnostic: all3-full without the VQA rows and text CE, so
                                                      the same robot samples per step as flow-only)
    ce-0.01              0.01 / 0.01 / 1, full       (diagnostic: both CE terms nearly off, VQA rows kept)
    action_ce0.01+flow   0   / 0.01 / 1, full        (diagnostic: neither VQA rows nor a large CE term)

Per arm: success mean ± std over seeds, per task and overall; the backbone-gradient share of each term at the end
of training; the chunk latency of the action path it uses. The JSON line and the table are printed, and the table
is appended to ``benchmarks/RESULTS.md`` with ``--results``.

Full run (about 5 min training + 4 min evaluation per arm and seed on 2 idle cores, so ~3 h for 7 trained arms x 3
seeds; the demos are generated once; disc-0.3 has all3-full's weights and is reported from its runs). Runs go
seed-major and each finished (arm, seed) is kept in ``OUT/ARM/seedN/bench.json``, so an interrupted run resumes
where it stopped and ``--summarise`` tabulates whatever has finished:

    MUJOCO_GL=osmesa python benchmarks/policy.py --seeds 0 1 2 --episodes 20 --results
    MUJOCO_GL=osmesa python benchmarks/policy.py --quick          # smoke run: 2 arms, 1 seed, tiny budget
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

ARMS: dict[str, dict[str, Any]] = {
    "flow-only": {"objective": {"w_text_ce": 0.0, "w_action_ce": 0.0, "w_flow": 1.0}},
    "discrete-only": {"objective": {"w_text_ce": 0.3, "w_action_ce": 1.0, "w_flow": 0.0}, "policy_mode": "discrete"},
    "all3-full": {"objective": {"w_text_ce": 0.3, "w_action_ce": 0.3, "w_flow": 1.0}},
    "all3-scaled": {"objective": {"w_text_ce": 0.3, "w_action_ce": 0.3, "w_flow": 1.0}, "bridge": "scaled",
                    "bridge_scale": 0.5},
    "all3-insulated": {"objective": {"w_text_ce": 0.3, "w_action_ce": 0.3, "w_flow": 1.0}, "bridge": "insulated"},
    **{f"disc-{w}": {"objective": {"w_text_ce": 0.3, "w_action_ce": w, "w_flow": 1.0}} for w in (0.01, 0.1)},
    "action_ce+flow": {"objective": {"w_text_ce": 0.0, "w_action_ce": 0.3, "w_flow": 1.0}},
    "ce-0.01": {"objective": {"w_text_ce": 0.01, "w_action_ce": 0.01, "w_flow": 1.0}},
    "action_ce0.01+flow": {"objective": {"w_text_ce": 0.0, "w_action_ce": 0.01, "w_flow": 1.0}},
}  # fmt: skip
# disc-0.3 is all3-full (same weights, same bridge): trained once, reported under both names.
ALIASES = {"disc-0.3": "all3-full"}


def _latency_ms(policy_dir: Path, data_root: Path, mode: str, repeat: int = 5) -> float:
    """Median wall time of one ``infer`` (one chunk) of the saved policy with the given action path."""
    import wall_data
    from wall_core import WallPolicy

    policy = WallPolicy.from_pretrained(policy_dir, mode=mode)
    ds = wall_data.LeRobotDataset(data_root, action_horizon=1)
    obs = {k: v for k, v in ds[0].items() if k not in ("action", "action_is_pad")}
    policy.infer(obs)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        policy.infer(obs)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def run_arm(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train + evaluate one arm with one training seed (demos shared through ``data_dir``)."""
    from wall_core.demo import DemoConfig, run_demo

    spec = ARMS[name]
    kw: dict[str, Any] = dict(
        out=str(Path(args.out) / name / f"seed{seed}"), data_dir=str(Path(args.out) / "data"), data_seed=0,
        seed=seed, eval_episodes=args.episodes, **spec,
    )  # fmt: skip
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    cfg.record_videos = False  # the benchmark measures success; videos cost ~14 s per recorded episode
    if args.train_steps:
        cfg.train_steps = args.train_steps
    done = Path(cfg.out) / "bench.json"
    if done.exists() and not args.rerun:  # resumable: a finished (arm, seed) is read back, not retrained
        logging.info("%s seed %d: reusing %s", name, seed, done)
        return dict(json.loads(done.read_text()))
    res = run_demo(cfg)
    policy_dir = Path(cfg.out) / "train" / "policy"
    res["latency_ms"] = _latency_ms(policy_dir, Path(args.out) / "data" / "metaworld", cfg.policy_mode)
    keep = ("success_rate", "per_task", "gradient_shares", "latency_ms", "timings_s", "refused_chunks",
            "discrete_counts")  # fmt: skip
    res = {k: res.get(k) for k in keep}
    done.write_text(json.dumps(res, indent=2))
    return res


def collect(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every finished (arm, seed) under ``--out`` (for ``--summarise``: a partial run reports what it has)."""
    results: dict[str, list[dict[str, Any]]] = {}
    for arm in args.arms:
        runs = [Path(args.out) / ALIASES.get(arm, arm) / f"seed{s}" / "bench.json" for s in args.seeds]
        results[arm] = [json.loads(f.read_text()) for f in runs if f.exists()]
    return {a: r for a, r in results.items() if r}


def summarise(results: dict[str, list[dict[str, Any]]]) -> tuple[list[list[Any]], list[str]]:
    """Rows: arm, per-task mean±std, overall mean±std, gradient shares (mean over seeds), latency."""
    tasks = sorted({t for runs in results.values() for r in runs for t in r["per_task"]})
    rows = []
    for arm, runs in results.items():
        row: list[Any] = [arm, len(runs)]
        for t in tasks:
            v = [r["per_task"][t]["success_rate"] for r in runs]
            row.append(f"{100 * np.mean(v):.0f}±{100 * np.std(v):.0f}")
        overall = [r["success_rate"] for r in runs]
        row.append(f"**{100 * np.mean(overall):.0f}±{100 * np.std(overall):.0f}**")
        keys = sorted({k for r in runs for k in r.get("gradient_shares", {}) if not k.startswith("norm/")})
        row.append(
            ", ".join(f"{k} {np.mean([r['gradient_shares'].get(k, 0) for r in runs]):.0%}" for k in keys)
            or "-"
        )
        row.append(f"{np.mean([r['latency_ms'] for r in runs]):.0f}")
        row.append(sum((r.get("discrete_counts") or {}).get("invalid", 0) for r in runs))
        row.append(sum(r.get("refused_chunks") or 0 for r in runs))
        rows.append(row)
    header = ["arm", "seeds", *tasks, "all", "grad shares", "chunk ms", "invalid decodes", "refused chunks"]
    return rows, header


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=[*ARMS, *ALIASES], choices=[*ARMS, *ALIASES])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=20, help="held-out episodes per task")
    p.add_argument("--train-steps", type=int, help="override the demo's training steps (same for every arm)")
    p.add_argument("--out", default="runs/bench_policy")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 arms, seed 0, the demo's quick budget")
    p.add_argument("--results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    p.add_argument("--rerun", action="store_true", help="retrain (arm, seed) pairs that already finished")
    p.add_argument("--summarise", action="store_true", help="only tabulate the finished runs under --out")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.arms, args.seeds, args.episodes = ["flow-only", "all3-full"], [0], min(args.episodes, 2)
    if not args.summarise:
        for seed in args.seeds:  # seed-major: an interrupted run still has every arm at its first seeds
            for arm in dict.fromkeys(ALIASES.get(a, a) for a in args.arms):
                run_arm(arm, seed, args)
    results = collect(args)
    rows, header = summarise(results)
    meta = {"machine": machine_info(), "seeds": args.seeds, "episodes_per_task": args.episodes,
            "quick": args.quick, "train_steps": args.train_steps}  # fmt: skip
    raw = results
    emit("policy", {**meta, "arms": raw}, rows, header)
    if args.results:
        lines = ["", f"## Co-training arms (benchmarks/policy.py, seeds {args.seeds}, {args.episodes} held-out "
                 f"episodes per task{', quick' if args.quick else ''})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        with open(Path(__file__).parent / "RESULTS.md", "a") as f:
            f.write("\n".join(lines) + "\n")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
