"""Checkpoint conversion on fixture A (author layout) and on a tiny stock Qwen2.5-VL: exact round trips, dtypes,
the LeRobot layout of keys.txt, the normaliser stats, the real geometry's key list, and errors that name keys."""

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from wall_core.cli import main
from wall_core.convert import (
    ReleasedGeometry,
    author_shapes,
    convert_checkpoint,
    normalizer_to_stats,
    ours_to_author,
    read_released,
    read_tensors,
    released_flat_config,
    split_normalizer_keys,
)

DATA = Path(__file__).parent / "data" / "wall_oss_05"
FIX = Path(os.environ.get("WALL_OSS_05_FIXTURE", DATA / "A"))


def _keys_txt(section: str) -> dict[str, tuple[list[int], str, str]]:
    """keys.txt section ('AUTHOR' / 'LEROBOT') -> {key: (shape, dtype, sha256_16)}."""
    out, cur = {}, None
    for line in (FIX / "keys.txt").read_text().splitlines():
        if line.startswith("# "):
            head = line[2:].split(" ")[0]
            cur = head if head in ("AUTHOR", "LEROBOT", "LeRobot") else cur
            continue
        if cur == section and line.strip():
            key, shape, dtype, _, sha = line.split("\t")
            out[key] = (json.loads(shape), dtype, sha.removeprefix("sha256_16="))
    return out


def _sha16(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)), k  # bit for bit


def test_author_ours_author_is_bit_identical(tmp_path):
    orig = read_tensors(FIX)
    assert main(["convert", str(FIX), str(tmp_path / "ours"), "--to", "ours"]) == 0
    ours = read_tensors(tmp_path / "ours")
    assert "backbone.model.model.language_model.layers.1.self_attn.k_proj.weight" in ours
    assert ours["expert.layers.0.qkv_proj.weight"].shape == (128, 32)
    assert not any(".normalizer_" in k for k in ours)  # stats live in norm_stats.safetensors
    convert_checkpoint(tmp_path / "ours", tmp_path / "back", to="author")
    _same(orig, read_tensors(tmp_path / "back"))
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.loads(
        (FIX / "config.json").read_text()
    )


def test_author_to_lerobot_matches_keys_txt_and_back(tmp_path):
    convert_checkpoint(FIX, tmp_path / "lr", to="lerobot")
    lr = read_tensors(tmp_path / "lr")
    ref = _keys_txt("LEROBOT")
    assert len(ref) == 61 and sorted(lr) == sorted(ref)
    for k, (shape, dtype, sha) in ref.items():
        assert list(lr[k].shape) == shape and str(lr[k].dtype) == f"torch.{dtype}", k
        assert _sha16(lr[k]) == sha, k  # fused gate_up rows [gate | up] exactly as LeRobot's state dict
    stats = load_file(str(tmp_path / "lr" / "normalizer_stats.safetensors"))
    inputs = load_file(str(FIX / "inputs.safetensors"))
    for name in ("action.q01", "action.q99", "observation.state.q01", "observation.state.q99"):
        assert torch.equal(stats[name], inputs[f"stats.{name}"]), name
    # LeRobot -> author: model tensors bit-identical; min exact, delta = q99 - q01 within one float32 ulp
    convert_checkpoint(tmp_path / "lr", tmp_path / "au", to="author", dataset="x2_normal")
    orig, back = (
        split_normalizer_keys(read_tensors(FIX)),
        split_normalizer_keys(read_tensors(tmp_path / "au")),
    )
    _same(orig[0], back[0])
    assert sorted(orig[1]) == sorted(back[1])
    for k in orig[1]:
        assert torch.allclose(orig[1][k], back[1][k], rtol=0, atol=4e-6), k


def test_normaliser_tensors_become_q01_q99():
    _, norm = split_normalizer_keys(read_tensors(FIX))
    stats, dtypes = normalizer_to_stats(norm)
    inputs = load_file(str(FIX / "inputs.safetensors"))
    assert sorted(stats) == ["x2_normal"] and set(dtypes.values()) == {"float32"}
    for feat in ("action", "observation.state"):
        for q in ("q01", "q99"):  # q99 = min + delta, equal to LeRobot's float32 value
            assert torch.equal(stats["x2_normal"][feat][q].float(), inputs[f"stats.{feat}.{q}"])
    with pytest.raises(KeyError, match=r"normalizer_propri\.delta\.x2_normal"):
        normalizer_to_stats({k: v for k, v in norm.items() if "propri.delta" not in k})


def test_mixed_dtypes_are_preserved(tmp_path):
    """The release stores matrices in bf16 and norms / action_preprocessor in fp32: each keeps its dtype."""
    sd = read_tensors(FIX)
    fp32 = ("input_layernorm", "post_attention_layernorm", "model.norms", "action_preprocessor")
    mixed = {k: v if any(s in k for s in fp32) else v.to(torch.bfloat16) for k, v in sd.items()}
    (tmp_path / "src").mkdir()
    save_file(mixed, str(tmp_path / "src" / "model.safetensors"))
    shutil.copy(FIX / "config.json", tmp_path / "src" / "config.json")
    convert_checkpoint(tmp_path / "src", tmp_path / "ours", to="ours")
    ours = read_tensors(tmp_path / "ours")
    assert (
        ours["backbone.model.model.language_model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
    )
    assert ours["expert.layers.0.norm_in.weight"].dtype == torch.float32
    assert ours["expert.proj_in.w1.weight"].dtype == torch.float32
    convert_checkpoint(tmp_path / "ours", tmp_path / "back", to="author")
    _same(mixed, read_tensors(tmp_path / "back"))


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda sd: sd.pop("model.layers.1.moe.experts.1.down_proj.weight"),
            "missing 1 keys.*experts.1.down_proj",
        ),
        (
            lambda sd: sd.__setitem__("model.layers.2.input_layernorms.0.weight", torch.ones(64)),
            "unexpected 1 keys.*layers.2",
        ),
        (
            lambda sd: sd.__setitem__("model.norms.1.weight", torch.ones(33)),
            r"model.norms.1.weight is \[33\], expected \[32\]",
        ),
        (
            lambda sd: sd.__setitem__("model.layers.0.self_attn.bogus.weight", torch.ones(2)),
            "self_attn.bogus",
        ),
    ],
)
def test_bad_keys_are_named(tmp_path, edit, match):
    sd = read_tensors(FIX)
    edit(sd)
    (tmp_path / "src").mkdir()
    save_file(sd, str(tmp_path / "src" / "model.safetensors"))
    shutil.copy(FIX / "config.json", tmp_path / "src" / "config.json")
    with pytest.raises((KeyError, ValueError), match=match):
        convert_checkpoint(tmp_path / "src", tmp_path / "out", to="ours")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out2"), "--to", "ours"]) == 2


def test_ours_rejects_an_untied_head():
    rel = read_released(FIX)
    from wall_core.convert import author_to_ours

    g = rel.geometry
    ours = author_to_ours(rel.tensors, g.hidden_size, g.num_kv_heads, g.head_dim)
    ours["backbone.model.lm_head.weight"] = ours[
        "backbone.model.model.language_model.embed_tokens.weight"
    ].clone()
    assert len(ours_to_author(ours)) == 65  # an equal (tied) head is dropped
    ours["backbone.model.lm_head.weight"][0, 0] += 1
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        ours_to_author(ours)


def test_vlm_to_vla_initialisation(tmp_path):
    """A stock Qwen2.5-VL (transformers' own class, saved with save_pretrained) -> ours: backbone kept exactly,
    a fresh action expert, and the result converts to the author layout with the released key set."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from wall_core.convert import qwen_config

    torch.manual_seed(0)
    vlm = Qwen2_5_VLForConditionalGeneration(qwen_config(json.loads((FIX / "config.json").read_text()), 300))
    vlm.save_pretrained(tmp_path / "qwen")
    assert main(["convert", str(tmp_path / "qwen"), str(tmp_path / "vla"), "--to", "ours"]) == 0
    ours = read_tensors(tmp_path / "vla")
    for k, v in vlm.state_dict().items():
        if k != "lm_head.weight":
            assert torch.equal(ours["backbone.model." + k], v), k
    w = ours["expert.layers.0.qkv_proj.weight"]
    assert w.shape == (128, 1024) and 0 < float(w.std()) < 0.05  # fresh Kaiming-uniform, 1024 inputs
    assert torch.equal(ours["expert.layers.1.norm_post.weight"], torch.ones(1024))
    author = read_released(tmp_path / "vla").tensors
    assert author["model.layers.0.self_attn.qkv_proj_experts.1.weight"].shape == (128, 1024)
    assert author["action_preprocessor.w1.weight"].shape == (1024, 52)


def test_real_geometry_keys_match_the_release():
    """The real 4.15 B geometry in the author layout: every key and shape of real_geometry_keys.txt."""
    ref = {}
    for line in (DATA / "real_geometry_keys.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape, *_ = line.split("\t")
            ref[key] = tuple(json.loads(shape))
    shapes = author_shapes(ReleasedGeometry.from_author_config(released_flat_config(), 26, 151936))
    assert shapes == ref
    assert sum(math.prod(s) for s in shapes.values()) == 4_154_377_216
