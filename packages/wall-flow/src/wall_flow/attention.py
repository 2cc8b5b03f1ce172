"""Joint attention over [prefix ; own] tokens with grouped KV heads, without copying keys/values.

Two paths compute the same thing (tested against each other):

* :func:`joint_attention` — SDPA with ``enable_gqa=True`` (the KV heads are shared by groups of query heads
  inside the kernel; no ``repeat_interleave`` copy) and an optional dense boolean mask.
* :func:`flex_joint_attention` — ``torch.nn.attention.flex_attention`` with a :class:`BlockMask` made by
  :func:`block_mask_from_dense`; blocks that are fully masked (e.g. the upper triangle of a causal prefix)
  are skipped. Eager flex attention is slow on CPU; wrap it with ``torch.compile`` for speed.

Shapes: q [B, Hq, Lq, d], k/v [B, Hkv, Lk, d] with Hq a multiple of Hkv; mask [B or 1, 1, Lq, Lk] bool
(True = may attend); outputs [B, Lq, Hq·d].
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

__all__ = ["block_mask_from_dense", "flex_joint_attention", "joint_attention"]


def _check_heads(q: Tensor, k: Tensor) -> None:
    if q.shape[1] % k.shape[1]:
        raise ValueError(
            f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]}); "
            "pass q [B, Hq, Lq, d] and k/v [B, Hkv, Lk, d]"
        )


def joint_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped KV heads; q [B,Hq,Lq,d], k/v [B,Hkv,Lk,d] -> [B,Lq,Hq*d].

    ``mask`` is boolean, True = may attend, broadcastable to [B, Hq, Lq, Lk]. Scale 1/sqrt(d). K/V are not
    copied per query group (SDPA's ``enable_gqa``).
    """
    _check_heads(q, k)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def block_mask_from_dense(mask: Tensor, block_size: int = 128) -> Any:
    """A flex-attention ``BlockMask`` equal to a dense boolean mask [B, 1, Lq, Lk] (True = may attend).

    The mask_mod reads the dense mask, so any of our prefix/flow masks is reproduced exactly; the block
    structure lets the kernel skip ``block_size``² tiles that are entirely masked.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    if mask.ndim != 4 or mask.shape[1] != 1 or mask.dtype.is_floating_point:
        raise ValueError(
            f"mask must be a boolean [B, 1, Lq, Lk] tensor, got {tuple(mask.shape)} {mask.dtype}"
        )
    dense = mask[:, 0]

    def mask_mod(b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        return dense[b, qi, ki]

    b, lq, lk = dense.shape
    return create_block_mask(mask_mod, b, None, lq, lk, device=mask.device, BLOCK_SIZE=block_size)


def flex_joint_attention(
    q: Tensor, k: Tensor, v: Tensor, block_mask: Any = None, compiled: Any = None
) -> Tensor:
    """The same attention through flex attention; ``block_mask`` from :func:`block_mask_from_dense` (None =
    attend everywhere); ``compiled`` an optional ``torch.compile(flex_attention)`` to call. -> [B, Lq, Hq*d]."""
    from torch.nn.attention.flex_attention import flex_attention

    _check_heads(q, k)
    fn = compiled or flex_attention
    out = fn(q, k, v, block_mask=block_mask, enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)
