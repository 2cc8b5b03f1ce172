"""MetaWorld MT10 with one co-training arm, on this CPU within 90 minutes (issue 15, "a larger result").

The recipe (everything else is the embedded default's, ``wall_core.demo.DemoConfig``):

- tasks: the ten MT10 tasks (``metaworld.MT10().train_classes``, v3);
- data: 25 scripted-expert demos per task on MT1's first 25 training layouts (expert noise 0.1, 64x64 corner
  camera), plus the VQA corpus when the arm has a text term;
- model: the ``small`` VLA (1.5 M parameters) trained ``--train-steps`` steps (default 8,000) at batch 32;
- evaluation: ``--episodes`` (default 20) closed-loop episodes per task on held-out layouts (ML1's test goal
  positions, checked disjoint from the demo layouts), flow actions, 10 Euler steps, execute 8 of 16; success
  per task and overall, the way LeRobot's ``lerobot-eval`` reports ``pc_success`` per task.

One command (about 20 min of demos, 35 min of training and 15 min of evaluation on 2 idle cores; the JSON
line records the measured phases):

    MUJOCO_GL=osmesa python benchmarks/mt10.py --arm flow-only
    MUJOCO_GL=osmesa python benchmarks/mt10.py --quick          # smoke: 2 tasks, tiny budget

Anchors on MT50 from the papers (different scale and protocol, quoted for orientation only): SmolVLA (0.45 B)
57%, pi0 48%, Evo-1 80%.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from _common import emit, machine_info
from policy import ARMS

MT10 = [
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arm", default="flow-only", choices=list(ARMS), help="objective arm of benchmarks/policy.py"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-steps", type=int, default=8000)
    p.add_argument("--demos-per-task", type=int, default=25, help="scripted-expert demos per task")
    p.add_argument("--episodes", type=int, default=20, help="held-out episodes per task")
    p.add_argument("--out", default="runs/bench_mt10")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 tasks, the demo's quick budget")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from wall_core.demo import DemoConfig, run_demo

    kw: dict[str, Any] = dict(
        out=str(Path(args.out) / args.arm / f"seed{args.seed}"), data_dir=str(Path(args.out) / "data"),
        data_seed=0, seed=args.seed, record_videos=False, **ARMS[args.arm],
    )  # fmt: skip
    if args.quick:
        cfg = DemoConfig.quick(tasks=MT10[:2], eval_episodes=min(args.episodes, 2), **kw)
    else:
        cfg = DemoConfig(tasks=MT10, episodes_per_task=args.demos_per_task, train_steps=args.train_steps,
                         eval_episodes=args.episodes, **kw)  # fmt: skip
    res = run_demo(cfg)
    rows = [[t, f"{100 * r['success_rate']:.0f}%", r["episodes"]] for t, r in sorted(res["per_task"].items())]
    rows.append(
        ["all", f"{100 * res['success_rate']:.0f}%", sum(r["episodes"] for r in res["per_task"].values())]
    )
    meta = {"machine": machine_info(), "arm": args.arm, "seed": args.seed, "train_steps": cfg.train_steps,
            "demos_per_task": cfg.episodes_per_task, "episodes_per_task": cfg.eval_episodes, "quick": args.quick}  # fmt: skip
    emit("mt10", {**meta, "success_rate": res["success_rate"], "per_task": res["per_task"],
                  "timings_s": res["timings_s"]}, rows, ["task", "success", "episodes"])  # fmt: skip


if __name__ == "__main__":
    main()
