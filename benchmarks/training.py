"""Training benchmark: samples/s of a full training step (all three objectives, AdamW) of the small default
model, and achieved FLOP/s as a fraction of this machine's measured fp32 matmul throughput (same run); then
one real-size Wall-OSS-0.5 backbone layer (2048 wide, MLP 11008, 16 query / 2 KV heads, d = 128, 1,032 tokens,
the released mask) forward + backward in fp32 and in bf16, each as a fraction of the matching matmul floor
(fp32 floor for fp32, bf16 floor for bf16), and the bf16 speed-up.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convs/attention, fwd + bwd).
Run: ``python benchmarks/training.py [--quick] [--layer-only]``.
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
from wall_flow import ActionExpertLayer


def real_layer(steps: int) -> tuple[list[list], dict]:
    """fwd + bwd of one real-size layer in fp32 and bf16 -> (table rows, results)."""
    rows, res = [], {}
    tokens = 1032
    mask = torch.ones(tokens, tokens, dtype=torch.bool).tril()[None, None]
    for name in ("float32", "bfloat16"):
        dt = getattr(torch, name)
        floor = matmul_floor(name, 2048)
        torch.manual_seed(0)
        layer = ActionExpertLayer(2048, 16, 2, 128, 11008).to(dt)
        x = torch.randn(1, tokens, 2048, dtype=dt, requires_grad=True)

        def step():
            layer(x, attn_mask=mask).float().square().mean().backward()

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
        rows.append([name, sec * 1e3, flops / 1e9, achieved, floor, achieved / floor])
        res[name] = {"step_ms": sec * 1e3, "gflop_per_step": flops / 1e9, "achieved_gflops": achieved,
                     "matmul_floor_gflops": floor, "fraction_of_matching_floor": achieved / floor}  # fmt: skip
    res["bf16_speedup"] = res["float32"]["step_ms"] / res["bfloat16"]["step_ms"]
    return rows, res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--layer-only", action="store_true", help="only the real-size layer (fp32 vs bf16)")
    args = ap.parse_args(argv)
    steps = 5 if args.quick else 20
    lrows, lres = real_layer(3 if args.quick else 5)
    if args.layer_only:
        emit("training_layer", {"real_layer": lres, "machine": machine_info()}, lrows, LAYER_HEADER)
        return lres
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
    result = {"matmul_floor_fp32_gflops": floor, **res, "real_layer": lres, "machine": machine_info()}
    emit(
        "training", result, rows, ["batch", "step ms", "samples/s", "GFLOP/step", "GFLOP/s", "of fp32 matmul"]
    )
    emit("training_layer", {"real_layer": lres}, lrows, LAYER_HEADER)
    return result


LAYER_HEADER = ["dtype", "fwd+bwd ms", "GFLOP/step", "GFLOP/s", "floor GFLOP/s", "of matching floor"]

if __name__ == "__main__":
    main()
