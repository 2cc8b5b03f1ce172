"""Inference benchmark: action-chunk latency split into prefix and per-flow-step time (batch 1, CPU).

For the small default model and a Qwen2.5-VL-shaped tiny config: prefix (images + text + state) once, then
10 Euler steps of the action expert over the cached prefix K/V; cached vs uncached chunk latency; and the ratio
of per-step cost to prefix cost as the prefix grows (the per-step cost should stay nearly flat while the
prefix cost grows). Run: ``python benchmarks/inference.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, timeit
from _wall_setup import make, samples


def measure(backbone: str, text_lens: list[int], repeat: int, **overrides) -> list[dict]:
    model, proc, size = make(backbone, **overrides)
    rows = []
    with torch.inference_mode():
        for n in text_lens:
            batch = proc(samples(1, size, text_len=n))
            prefix_s = timeit(lambda: model.prefix_forward(batch), repeat=repeat)
            cache = model.prefix_forward(batch)
            x = torch.zeros(1, 16, 8)
            t = torch.zeros(1)
            step_s = timeit(lambda: model.flow_forward(x, t, cache, batch.dof_mask), repeat=repeat)
            cached = timeit(lambda: model.predict_actions(batch, num_steps=10, use_cache=True), repeat=repeat)
            uncached = timeit(
                lambda: model.predict_actions(batch, num_steps=10, use_cache=False),
                repeat=max(2, repeat // 2),
            )
            rows.append({"backbone": backbone, "prefix_tokens": int(batch.valid.sum()), "prefix_ms": prefix_s * 1e3, "flow_step_ms": step_s * 1e3,
                         "chunk_cached_ms": cached * 1e3, "chunk_uncached_ms": uncached * 1e3, "uncached_over_cached": uncached / cached,
                         "step_over_prefix": step_s / prefix_s})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    lens = [16, 256] if args.quick else [16, 128, 512, 1024]
    repeat = 3 if args.quick else 7
    rows = measure("small", lens, repeat) + measure(
        "qwen2.5-vl-tiny", lens, repeat, hidden_size=128, num_layers=4
    )
    result = {"rows": rows, "machine": machine_info()}
    table = [
        [
            r["backbone"],
            r["prefix_tokens"],
            r["prefix_ms"],
            r["flow_step_ms"],
            r["chunk_cached_ms"],
            r["chunk_uncached_ms"],
            r["uncached_over_cached"],
            r["step_over_prefix"],
        ]
        for r in rows
    ]
    emit(
        "inference",
        result,
        table,
        [
            "backbone",
            "prefix tok",
            "prefix ms",
            "step ms",
            "chunk ms (cache)",
            "chunk ms (no cache)",
            "no-cache/cache",
            "step/prefix",
        ],
    )
    return result


if __name__ == "__main__":
    main()
