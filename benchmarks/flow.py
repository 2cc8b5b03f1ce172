"""Flow sampling benchmark: time per action chunk vs solver and step count on CPU.

Uses a wall-flow ActionExpert (width 256, 4 layers) on a 50x14 chunk with a cached 256-token prefix K/V,
batch 1. Run: ``python benchmarks/flow.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, timeit

import wall_flow as wf
from wall_flow.solvers import EVALS_PER_STEP


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    expert = wf.ActionExpert(
        action_dim=14, width=256, num_layers=4, num_heads=4, num_kv_heads=1, head_dim=64
    ).eval()
    prefix = [(torch.randn(1, 1, 256, 64), torch.randn(1, 1, 256, 64)) for _ in range(4)]
    x0 = torch.randn(1, 50, 14)
    rows, res = [], {}
    steps_list = (5, 10) if args.quick else (5, 10, 20)
    with torch.inference_mode():
        per_eval = timeit(lambda: expert(x0, torch.zeros(1), prefix_kv=prefix), repeat=7)
        for method in ("euler", "midpoint", "heun", "rk4"):
            for steps in steps_list:
                sec = timeit(
                    lambda: wf.sample(expert, x0, num_steps=steps, method=method, prefix_kv=prefix), repeat=3
                )
                rows.append([method, steps, steps * EVALS_PER_STEP[method], sec * 1e3])
                res[f"{method}_{steps}_ms"] = sec * 1e3
    result = {"per_velocity_eval_ms": per_eval * 1e3, **res, "machine": machine_info()}
    emit("flow", result, rows, ["solver", "steps", "velocity evals", "ms / chunk"])
    return result


if __name__ == "__main__":
    main()
