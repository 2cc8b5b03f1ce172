"""Grouped-query attention without K/V copies and the flex block-mask path equal the dense reference."""

import pytest
import torch
import torch.nn.functional as F

from wall_flow import block_mask_from_dense, flex_joint_attention, joint_attention


def _reference(q, k, v, mask):
    """The old path: K/V copied per query group, dense boolean mask."""
    rep = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=mask
    )
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _prefix_flow_mask(b, p, h):
    """A [B, 1, P + H, P + H] mask like the model's: left padding, causal prefix, causal flow block that
    sees the valid prefix (row 1 has 5 pad tokens)."""
    n = p + h
    valid = torch.ones(b, p, dtype=torch.bool)
    valid[1, :5] = False
    cols = torch.cat([valid, torch.ones(b, h, dtype=torch.bool)], 1)
    m = torch.ones(n, n, dtype=torch.bool).tril()[None] & cols[:, None, :]
    m = m | torch.eye(n, dtype=torch.bool)[None]
    return m[:, None]


@pytest.mark.parametrize("hq,hkv", [(4, 1), (8, 2), (4, 4)])
def test_gqa_sdpa_equals_repeated_kv(hq, hkv):
    torch.manual_seed(0)
    b, p, h, d = 2, 150, 8, 16
    q = torch.randn(b, hq, p + h, d)
    k, v = torch.randn(b, hkv, p + h, d), torch.randn(b, hkv, p + h, d)
    mask = _prefix_flow_mask(b, p, h)
    ref = _reference(q, k, v, mask)
    out = joint_attention(q, k, v, mask)
    assert out.shape == (b, p + h, hq * d)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)  # same math, fp32 reduction order only


def test_flex_block_mask_equals_dense():
    torch.manual_seed(1)
    b, p, h, d, hq, hkv = 2, 200, 8, 16, 8, 2
    q = torch.randn(b, hq, p + h, d)
    k, v = torch.randn(b, hkv, p + h, d), torch.randn(b, hkv, p + h, d)
    mask = _prefix_flow_mask(b, p, h)
    bm = block_mask_from_dense(mask, block_size=64)
    out = flex_joint_attention(q, k, v, bm)
    torch.testing.assert_close(out, _reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
    # the flow rows only (the expert's query slice against [prefix ; own]) also match
    rows = mask[:, :, p:]
    bm_rows = block_mask_from_dense(rows, block_size=64)
    out_rows = flex_joint_attention(q[:, :, p:], k, v, bm_rows)
    torch.testing.assert_close(out_rows, _reference(q[:, :, p:], k, v, rows), atol=1e-5, rtol=1e-5)


def test_bad_heads_and_masks_are_clear_errors():
    q, k = torch.randn(1, 3, 4, 8), torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        joint_attention(q, k, k)
    with pytest.raises(ValueError, match="boolean"):
        block_mask_from_dense(torch.zeros(1, 4, 4))
