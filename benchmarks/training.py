"""Training benchmark: samples/s of a full training step (all three objectives, AdamW) of the small default
model, and achieved FLOP/s as a fraction of this machine's measured fp32 matmul throughput (same run).
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convs/attention, fwd + bwd).
Run: ``python benchmarks/training.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, matmul_floor
from _wall_setup import make, samples

from wall_core.objective import WallObjective


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    steps = 5 if args.quick else 20
    rows, res = [], {}
    floor = matmul_floor("float32", 2048)
    for bs in (8, 32):
        model, proc, size = make("small")
        model.train()
        batch = proc(samples(bs, size, with_actions=True))
        obj = WallObjective(w_text_ce=0.0, w_action_ce=0.0, w_flow=1.0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            out = obj(model, batch)
            opt.zero_grad()
            out.loss.backward()
            opt.step()

        with FlopCounterMode(display=False) as fc:
            step()
        flops = fc.get_total_flops()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        sec = float(np.median(times))
        achieved = flops / sec / 1e9
        rows.append([bs, sec * 1e3, bs / sec, flops / 1e9, achieved, achieved / floor])
        res[f"bs{bs}"] = {
            "step_ms": sec * 1e3,
            "samples_per_s": bs / sec,
            "gflop_per_step": flops / 1e9,
            "achieved_gflops": achieved,
            "fraction_of_matmul_floor": achieved / floor,
        }
    result = {"matmul_floor_fp32_gflops": floor, **res, "machine": machine_info()}
    emit(
        "training", result, rows, ["batch", "step ms", "samples/s", "GFLOP/step", "GFLOP/s", "of fp32 matmul"]
    )
    return result


if __name__ == "__main__":
    main()
