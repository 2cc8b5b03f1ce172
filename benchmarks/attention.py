"""Attention benchmark at one real-size Wall-OSS-0.5 layer: 2048 wide, 16 query / 2 KV heads (d = 128),
a 1,000-token prefix + 32 flow slots, the released mask (causal prefix with left padding, causal flow block).

Paths: ``repeat_kv`` (the old one: K/V copied 8x, dense bool mask), ``sdpa_gqa`` (SDPA ``enable_gqa``, no
copies), ``flex`` (flex attention + BlockMask, ``torch.compile``-d; eager flex is far slower on CPU). Time is
the median forward; "alloc MiB" is the sum of CPU allocations during one call (torch profiler), which counts
the K/V copies. Run: ``python benchmarks/attention.py [--quick] [--dtype bfloat16]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, timeit

from wall_flow import block_mask_from_dense, flex_joint_attention, joint_attention


def _mask(p: int, h: int, pad: int) -> torch.Tensor:
    """[1, 1, P + H, P + H] bool: causal over valid columns (first ``pad`` are padding), pads see themselves."""
    n = p + h
    cols = torch.ones(n, dtype=torch.bool)
    cols[:pad] = False
    m = torch.ones(n, n, dtype=torch.bool).tril() & cols[None]
    return (m | torch.eye(n, dtype=torch.bool))[None, None]


def _repeat_kv(q, k, v, mask):
    rep = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=mask
    )
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _alloc_mib(fn) -> float:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(e.cpu_memory_usage, 0) for e in prof.events()) / 2**20


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--no-flex", action="store_true", help="skip the (compiled) flex path")
    args = ap.parse_args(argv)
    dt = getattr(torch, args.dtype)
    b, hq, hkv, d, p, h = 1, 16, 2, 128, 1000, 32
    torch.manual_seed(0)
    q = torch.randn(b, hq, p + h, d, dtype=dt)
    k, v = torch.randn(b, hkv, p + h, d, dtype=dt), torch.randn(b, hkv, p + h, d, dtype=dt)
    mask = _mask(p, h, pad=24)
    ref = _repeat_kv(q, k, v, mask)
    paths = {
        "repeat_kv": lambda: _repeat_kv(q, k, v, mask),
        "sdpa_gqa": lambda: joint_attention(q, k, v, mask),
    }
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        bm = block_mask_from_dense(mask)
        compiled = torch.compile(flex_attention)
        paths["flex"] = lambda: flex_joint_attention(q, k, v, bm, compiled)
    rows, res = [], {}
    for name, fn in paths.items():
        err = (fn().float() - ref.float()).abs().max().item()
        sec = timeit(fn, repeat=3 if args.quick else 7, warmup=1)
        mib = _alloc_mib(fn)
        rows.append([name, sec * 1e3, mib, err])
        res[name] = {"ms": sec * 1e3, "alloc_mib": mib, "max_abs_diff_vs_repeat_kv": err}
    kv_copy_mib = 2 * b * hq * (p + h) * d * q.element_size() / 2**20
    result = {
        "shape": {"batch": b, "q_heads": hq, "kv_heads": hkv, "head_dim": d, "prefix": p, "flow": h},
        "dtype": args.dtype, "kv_copy_mib_avoided": kv_copy_mib, **res, "machine": machine_info(),
    }  # fmt: skip
    emit("attention", result, rows, ["path", "fwd ms", "alloc MiB", "max|diff| vs repeat_kv"])
    return result


if __name__ == "__main__":
    main()
