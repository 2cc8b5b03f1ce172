"""The released input contract, recomputed from fixture A's raw inputs: normalised state/actions, state bins,
prompt string, token ids (stand-in vocabulary), pixel values and m-RoPE position ids, all exactly."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wall_core.convert import qwen_config
from wall_core.processing.wall_oss import (
    add_released_tokens,
    camera_label,
    flow_prompt,
    image_processor,
    mrope_position_ids,
    preprocess_images,
    quantile_normalize,
    quantile_unnormalize,
    stand_in_tokenizer,
    state_bins,
    state_text,
)

FIX = Path(os.environ.get("WALL_OSS_05_FIXTURE", Path(__file__).parent / "data" / "wall_oss_05" / "A"))
INP = load_file(str(FIX / "inputs.safetensors"))
REC = json.loads((FIX / "inputs.json").read_text())
IMG = "images_raw.observation.images.face_view"


def _proc():
    ip = REC["images"]["image_processor"]
    return image_processor(ip["min_pixels"], ip["max_pixels"])


def test_normalisation_and_state_bins_exact():
    st = quantile_normalize(
        INP["state_raw"], INP["stats.observation.state.q01"], INP["stats.observation.state.q99"]
    )
    act = quantile_normalize(INP["actions_raw"], INP["stats.action.q01"], INP["stats.action.q99"])
    assert torch.equal(st, INP["state_normalized"]) and torch.equal(act, INP["actions_normalized"])
    bins = state_bins(st)
    assert np.array_equal(bins, INP["state_bins"].numpy()) and bins.min() >= 0 and bins.max() <= 511
    assert state_bins(np.array([-1.0, -0.999, 0.0, 0.999, 1.0], np.float32)).tolist() == [0, 0, 256, 511, 511]
    with pytest.raises(ValueError, match="clamped"):
        state_bins(np.array([1.5], np.float32))
    back = quantile_unnormalize(torch.tensor([[-1.0, 1.0, 3.0]]), torch.zeros(3), torch.full((3,), 2.0))
    assert back.tolist() == [[0.0, 2.0, 4.0]]  # output side is not clamped


def test_prompt_ids_pixels_positions_exact():
    pv, grid = preprocess_images([INP[IMG][0]], _proc())
    assert torch.equal(pv, INP["pixel_values"]) and torch.equal(grid, INP["image_grid_thw"])
    prefix, postfix = flow_prompt(
        "pick up the red cube", [camera_label("observation.images.face_view")], [int(grid[0].prod()) // 4],
        state_text(INP["state_bins"][0].numpy()), 32,
    )  # fmt: skip
    assert prefix + postfix == REC["prompts"][0]["text_passed_to_tokenizer"]
    tok = stand_in_tokenizer()
    ids = tok(prefix, add_special_tokens=False)["input_ids"]
    full = ids + tok(postfix, add_special_tokens=False)["input_ids"]
    assert full == INP["input_ids"][0].tolist() and len(ids) == REC["sequence"]["prefix_length_P"]
    cfg = qwen_config(json.loads((FIX / "config.json").read_text()), 300)
    x = torch.tensor([ids])
    pos = mrope_position_ids(x, torch.ones_like(x), grid, 262, cfg)
    ref = INP["position_ids"]
    assert torch.equal(pos, ref[:, :, : len(ids)])
    # the 32 action slots continue as 1-D text positions: max(prefix) + 1 + i on all three axes
    slots = pos.amax(dim=(0, 2))[:, None] + 1 + torch.arange(32)
    assert torch.equal(ref[:, :, len(ids) :], slots[None].expand(3, -1, -1))


def test_left_padding_and_two_cameras_positions():
    """A left-padded row with two cameras of different sizes: ids of the real tokens equal the unpadded row's."""
    tok = stand_in_tokenizer()
    cams = [
        torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8),
        torch.randint(0, 256, (3, 120, 80), dtype=torch.uint8),
    ]
    pv, grid = preprocess_images(cams, _proc())
    assert grid[:, 1:].tolist() != [grid[0, 1:].tolist()] * 2  # different sizes
    prefix, _ = flow_prompt(
        "stack", ["front view", "left wrist view"], (grid.prod(-1) // 4).tolist(), "1 2", 32
    )
    assert (
        "Observation: front view: <|vision_start|>" in prefix
        and " left wrist view: <|vision_start|>" in prefix
    )
    ids = torch.tensor([tok(prefix, add_special_tokens=False)["input_ids"]])
    cfg = qwen_config(json.loads((FIX / "config.json").read_text()), 300)
    alone = mrope_position_ids(ids, torch.ones_like(ids), grid, 262, cfg)
    pad = torch.full((1, 7), 256)
    padded = torch.cat([pad, ids], 1)
    mask = torch.cat([torch.zeros_like(pad), torch.ones_like(ids)], 1)
    pos = mrope_position_ids(padded, mask, grid, 262, cfg)
    assert torch.equal(pos[:, :, 7:], alone) and (pos[:, :, :7] == 1).all()
    assert int(alone[0, 0].max()) < ids.shape[1] - 1  # images compress the positions (3-D grid)


def test_released_tokens_are_added_once():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    )
    ids = add_released_tokens(tok)
    assert ids == [2, 3] and add_released_tokens(tok) == [2, 3] and tok.padding_side == "left"
    assert tok("<|propri|><|action|>", add_special_tokens=False)["input_ids"] == [2, 3]
    assert stand_in_tokenizer().convert_tokens_to_ids(["<|propri|>", "<|action|>"]) == [264, 265]
