"""Fixtures for the model tests: a tiny wall-oss-0.5 model (author-layout config built inline) and
hand-made batches in the released layout (image + text prompt, 3-D m-RoPE ids, left padding)."""

from __future__ import annotations

import pytest
import torch

from wall_core.model import SEG, WallBatch, WallVLA
from wall_core.model.presets import wall_oss_05_config

TINY_AUTHOR = {
    "model_type": "qwen2_5_vl", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "vocab_size": 300, "tie_word_embeddings": True,
    "max_position_embeddings": 4096, "hidden_act": "silu", "bos_token_id": 256, "eos_token_id": 258,
    "vision_start_token_id": 259, "vision_end_token_id": 260, "vision_token_id": 261, "image_token_id": 262,
    "video_token_id": 263,
    "vision_config": {
        "depth": 2, "hidden_size": 32, "intermediate_size": 48, "num_heads": 2, "in_chans": 3, "out_hidden_size": 64,
        "patch_size": 14, "spatial_merge_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
        "tokens_per_second": 2, "temporal_patch_size": 2,
    },
    "num_experts": 2, "dim_inputs": [64, 32],
    "experts": [{"hidden_size": 64, "intermediate_size": 96}, {"hidden_size": 32, "intermediate_size": 48}],
    "action_hidden_size": 32, "causal_action_attention_mask": True, "use_x_loss": True,
    "noise_scheduler": {"beta_alpha": 1.5, "beta_beta": 1.0, "s": 0.999, "num_inference_timesteps": 10},
}  # fmt: skip
IMAGE, VSTART, VEND = 262, 259, 260


def tiny_wall_oss(seed: int = 0, **overrides: object) -> WallVLA:
    """The tiny released-architecture model with random weights."""
    torch.manual_seed(seed)
    return WallVLA(wall_oss_05_config(TINY_AUTHOR, **overrides)).eval()


def _row(prompt: bytes, grid: tuple[int, int], extra: list[int]) -> tuple[list[int], torch.Tensor, list[int]]:
    """ids, m-RoPE ids [3, n] and segments of [vision_start, image x gh*gw, vision_end, prompt bytes, extra]."""
    gh, gw = grid
    ids = [VSTART, *[IMAGE] * (gh * gw), VEND, *prompt, *extra]
    seg = [
        SEG.TEXT,
        *[SEG.IMAGE] * (gh * gw),
        SEG.TEXT,
        *[SEG.TEXT] * len(prompt),
        *[SEG.ACTION] * len(extra),
    ]
    t = [0]
    h, w = [0], [0]
    s = 1
    for r in range(gh):
        for c in range(gw):
            t.append(s), h.append(s + r), w.append(s + c)
    nxt = s + max(gh, gw)
    for i in range(len(ids) - 1 - gh * gw):
        t.append(nxt + i), h.append(nxt + i), w.append(nxt + i)
    return ids, torch.tensor([t, h, w]), seg


def released_batch(prompts: list[bytes], extras: list[list[int]], seed: int = 0) -> WallBatch:
    """Left-padded batch of image + text prompts (4 merged image tokens each) with 3-D position ids;
    ``extras[i]`` are discrete action tokens (segment ACTION) appended to row i."""
    g = torch.Generator().manual_seed(seed)
    rows = [_row(p, (2, 2), e) for p, e in zip(prompts, extras)]
    n, b = max(len(r[0]) for r in rows), len(rows)
    ids = torch.full((b, n), 256)
    seg = torch.zeros(b, n, dtype=torch.long)
    pos = torch.ones(3, b, n, dtype=torch.long)
    for i, (r_ids, r_pos, r_seg) in enumerate(rows):
        k = len(r_ids)
        ids[i, n - k :], seg[i, n - k :], pos[:, i, n - k :] = torch.tensor(r_ids), torch.tensor(r_seg), r_pos
    labels = torch.where(seg == SEG.ACTION, ids, torch.full_like(ids, -100))
    return WallBatch(
        input_ids=ids, valid=seg != SEG.PAD, segment=seg, labels=labels,
        images=torch.zeros(b, 0, 3, 1, 1, dtype=torch.uint8), image_valid=torch.zeros(b, 0, dtype=torch.bool),
        state=torch.zeros(b, 26), actions=torch.randn(b, 32, 26, generator=g) * 0.5,
        action_loss_mask=torch.ones(b, 32, 26), dof_mask=torch.ones(b, 26),
        pixel_values=torch.randn(16 * b, 1176, generator=g), image_grid_thw=torch.tensor([[1, 4, 4]] * b),
        position_ids=pos,
    )  # fmt: skip


@pytest.fixture
def wall_oss():
    """Factory: ``wall_oss(seed=0, **config_overrides)`` -> tiny wall-oss-0.5 WallVLA."""
    return tiny_wall_oss


@pytest.fixture
def released():
    """Factory: ``released(prompts, extras, seed=0)`` -> WallBatch (see :func:`released_batch`)."""
    return released_batch


@pytest.fixture
def tiny_author():
    """A deep copy of the tiny author config (flat config.json layout)."""
    import copy

    return copy.deepcopy(TINY_AUTHOR)
