"""Released Wall-OSS-0.5 at the real geometry (4.15 B parameters, random weights, bf16) on this CPU.

One action chunk, batch 1, one 448x448 camera (256 merged vision tokens), the released prompt with the state
written as text: prefix ms (vision tower + backbone over the prompt), per-flow-step ms (the action expert over
the cached prefix K/V), chunk ms with the prefix KV cache (1 prefix + 10 steps), chunk ms with the prefix
recomputed at every step (what the reference implementation does), their ratio, and peak RSS.

The real Qwen tokenizer is not available offline: the prompt goes through the byte-level stand-in vocabulary,
so its text part has more tokens than with Qwen's BPE (the table gives the prefix length actually timed).
Run: ``python benchmarks/released.py [--repeat N] [--quick]`` (``--quick``: fixture A's tiny geometry).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, timeit

from wall_core.convert import author_config_to_ours, feature_stats, released_flat_config
from wall_core.convert.geometry import ReleasedGeometry
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.processing.wall_oss_steps import build_released_pipeline

FIXTURE = Path(__file__).parents[1] / "packages" / "wall-core" / "tests" / "data" / "wall_oss_05" / "A"


def build(quick: bool, dtype: torch.dtype) -> WallVLA:
    """The wall-oss-0.5 preset with random weights, constructed directly in ``dtype`` (no fp32 copy)."""
    flat = json.loads((FIXTURE / "config.json").read_text()) if quick else released_flat_config()
    vocab = 300 if quick else 151936
    cfg = author_config_to_ours(flat, ReleasedGeometry.from_author_config(flat, 26, vocab))["model"]
    cfg["backbone_overrides"] = {
        **cfg["backbone_overrides"],
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        return WallVLA(WallVLAConfig.from_dict(cfg)).eval()
    finally:
        torch.set_default_dtype(old)


def sample(rng: torch.Generator) -> dict:
    """One robot observation: a 448x448 camera, a 26-D state, the task."""
    return {
        "observation.images.face_view": torch.randint(
            0, 256, (3, 448, 448), dtype=torch.uint8, generator=rng
        ),
        "observation.state": torch.rand(26, generator=rng) * 2 - 1,
        "task": "pick up the red cube and place it in the bowl",
        "dataset": "bench",
    }


def stats() -> dict:
    one = {"q01": -torch.ones(26, dtype=torch.float64), "q99": torch.ones(26, dtype=torch.float64)}
    return feature_stats({"bench": {"action": dict(one), "observation.state": dict(one)}})


def measure(quick: bool, repeat: int) -> dict:
    t0 = time.perf_counter()
    model = build(quick, torch.bfloat16)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    pipe = build_released_pipeline(model, stats=stats())
    batch = pipe([sample(torch.Generator().manual_seed(0))])
    batch.pixel_values = batch.pixel_values.to(torch.bfloat16)
    noise = torch.randn(
        1, model.config.action_horizon, model.config.action_dim, generator=torch.Generator().manual_seed(1)
    )
    x = noise.to(torch.bfloat16)
    t = torch.zeros(1)
    with torch.inference_mode():
        prefix_s = timeit(lambda: model.prefix_forward(batch), repeat=repeat, warmup=1)
        cache = model.prefix_forward(batch)
        step_s = timeit(
            lambda: model.flow_forward(x, t, cache, batch.dof_mask), repeat=max(3, repeat), warmup=1
        )
        cached_s = timeit(
            lambda: model.predict_actions(batch, noise=x, use_cache=True), repeat=repeat, warmup=0
        )
        uncached_s = timeit(
            lambda: model.predict_actions(batch, noise=x, use_cache=False), repeat=1, warmup=0
        )
    return {
        "geometry": "fixture-A" if quick else "real",
        "params": n_params,
        "dtype": "bfloat16",
        "prefix_tokens": int(batch.valid.sum()),
        "image_tokens": int(batch.image_grid_thw.prod(-1).sum()) // 4,
        "num_steps": model.config.num_steps,
        "build_s": build_s,
        "prefix_ms": prefix_s * 1e3,
        "flow_step_ms": step_s * 1e3,
        "chunk_cached_ms": cached_s * 1e3,
        "chunk_recomputed_ms": uncached_s * 1e3,
        "recomputed_over_cached": uncached_s / cached_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "repeat": repeat,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fixture A's tiny geometry (smoke test)")
    ap.add_argument(
        "--repeat", type=int, default=2, help="timed repeats (median); the recomputed chunk runs once"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = measure(args.quick, args.repeat)
    result = {**r, "machine": machine_info()}
    header = ["geometry", "params", "prefix tok", "prefix ms", "step ms", "chunk ms (cache)",
              "chunk ms (recompute)", "recompute/cache", "peak RSS GiB"]  # fmt: skip
    row = [r["geometry"], f"{r['params'] / 1e9:.3f} B", r["prefix_tokens"], r["prefix_ms"], r["flow_step_ms"],
           r["chunk_cached_ms"], r["chunk_recomputed_ms"], r["recomputed_over_cached"], r["peak_rss_gib"]]  # fmt: skip
    emit("released", result, [row], header)
    return result


if __name__ == "__main__":
    main()
