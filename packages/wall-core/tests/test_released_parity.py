"""Numerical parity with the released Wall-OSS-0.5 (fixture A: the reference implementation's outputs, fp32).

The checkpoint goes through ``wall convert`` into our layout, the ``wall-oss-0.5`` preset loads it strictly,
the released pipeline builds the batch from the raw fixture inputs, and every reference output is matched to
the README's tolerances. ``WALL_OSS_05_FIXTURE`` points the test at another fixture folder of the same format.
"""

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, load_model

from wall_core.convert import convert_checkpoint, feature_stats, load_norm_stats, load_yaml
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.model.masks import flow_positions
from wall_core.processing.wall_oss_steps import build_released_pipeline

FIX = Path(os.environ.get("WALL_OSS_05_FIXTURE", Path(__file__).parent / "data" / "wall_oss_05" / "A"))
ATOL, EULER_ATOL, LOSS_RTOL = 1e-4, 5e-4, 1e-5
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(model, pipeline, inputs, outputs, record) for the fixture, through the converter."""
    torch.manual_seed(0)
    out = convert_checkpoint(FIX, tmp_path_factory.mktemp("ours") / "A", to="ours")
    cfg = load_yaml(out / "config.yaml")
    model = WallVLA(WallVLAConfig.from_dict(cfg["model"])).eval()
    missing, unexpected = load_model(model, str(out / "model.safetensors"), strict=True)
    assert not missing and not unexpected
    stats, _ = load_norm_stats(out / "norm_stats.safetensors")
    record = json.loads((FIX / "inputs.json").read_text())
    proc = record["images"]["image_processor"]
    pipe = build_released_pipeline(model, stats=feature_stats(stats), min_pixels=proc["min_pixels"],
                                   max_pixels=proc["max_pixels"])  # fmt: skip
    return (
        model,
        pipe,
        load_file(str(FIX / "inputs.safetensors")),
        load_file(str(FIX / "outputs.safetensors")),
        record,
    )


def fixture_sample(inp, record, row=0):
    """Raw observation + action chunk of fixture row ``row``, as a robot / dataset would give them."""
    cams = record["images"]["cameras"]
    return {
        **{key: inp[f"images_raw.{key}"][row] for key in cams},
        "observation.state": inp["state_raw"][row], "action": inp["actions_raw"][row],
        "action_is_pad": inp["action_is_pad"][row], "task": record["prompts"][row]["task"],
        "dataset": record["normalisation"]["dataset_name"],
    }  # fmt: skip


def _close(name, got, want, atol, diffs):
    diff = float((got.double() - want.double()).abs().max())
    diffs[name] = diff
    assert diff <= atol, f"{name}: max |diff| {diff:.3g} > {atol}"


def test_released_parity_fp32(released):
    model, pipe, inp, ref, record = released
    sample = fixture_sample(inp, record)
    batch = pipe([sample])
    p = record["sequence"]["prefix_length_P"]
    # processor side: exact
    assert torch.equal(batch.input_ids, inp["input_ids"][:, :p]) and batch.valid.all()
    assert torch.equal(batch.position_ids, inp["position_ids"][:, :, :p])
    assert torch.equal(batch.pixel_values, inp["pixel_values"]) and torch.equal(
        batch.image_grid_thw, inp["image_grid_thw"]
    )
    assert torch.equal(batch.actions, inp["actions_normalized"][0][None])
    tok = pipe.inputs[-2]
    text = tok.text_tokenizer.decode(batch.input_ids[0]) + "<|action|>" * 32
    assert text == record["prompts"][0]["text_passed_to_tokenizer"]
    slots = flow_positions(batch.position_ids, batch.valid, batch.segment, model.config.action_horizon)
    assert torch.equal(slots, inp["position_ids"][:, :, p:])  # action slots: ordinary 1-D text positions
    diffs: dict[str, float] = {}
    with torch.no_grad():
        _close("vision_features", model.backbone.encode_pixels(batch.pixel_values, batch.image_grid_thw),
               ref["vision_features"], ATOL, diffs)  # fmt: skip
        layers: list[torch.Tensor] = []
        cache = model.prefix_forward(batch, collect=layers)
        _close("layer0_hidden_prefix", layers[0], ref["layer0_hidden_prefix"], ATOL, diffs)
        _close(
            "hidden_by_layer_last3_text",
            torch.stack([h[:, -3:] for h in layers]),
            ref["hidden_by_layer_last3_text"],
            ATOL,
            diffs,
        )
        _close("final_hidden_last3_text", cache.hidden[:, -3:], ref["final_hidden_last3_text"], ATOL, diffs)
        _close(
            "lm_logits_last3",
            model.backbone.lm_head(cache.hidden[:, -3:]),
            ref["lm_logits_last3"],
            ATOL,
            diffs,
        )
        t, x_t = inp["t"], inp["x_t"]
        expert: list[torch.Tensor] = []
        hid = model.flow_hidden(x_t, t, cache, batch.dof_mask, collect=expert)
        _close("hidden_by_layer_actions", torch.stack(expert), ref["hidden_by_layer_actions"], ATOL, diffs)
        _close("final_hidden_actions", hid, ref["final_hidden_actions"], ATOL, diffs)
        v = model.flow_forward(x_t, t, cache, batch.dof_mask)
        _close("velocity", v, ref["velocity"], ATOL, diffs)
        _close("x_pred", x_t + (1 - t[:, None, None]) * v, ref["x_pred"], ATOL, diffs)
        out = model(batch, t=t, noise=inp["noise"], compute=("flow",))
        assert torch.allclose(out.x0, inp["noise"]) and torch.allclose(out.v_pred, v, atol=1e-6)
        loss = model.flow.loss(out.v_pred, out.x0, out.x1, out.t, out.action_loss_mask)
        rel = abs(float(loss) - float(ref["flow_loss"])) / abs(float(ref["flow_loss"]))
        diffs["flow_loss_rel"] = rel
        assert rel <= LOSS_RTOL, f"flow loss {float(loss)} vs {float(ref['flow_loss'])}"
        chunk = model.predict_actions(batch, noise=inp["noise"])
        _close("euler_actions_normalized", chunk, ref["euler_actions_normalized"], EULER_ATOL, diffs)
        raw = pipe.postprocess(chunk, sample["dataset"])
        _close("euler_actions_raw", raw, ref["euler_actions_raw"], EULER_ATOL, diffs)
        recompute = model.predict_actions(batch, noise=inp["noise"], use_cache=False)
        _close("euler_no_cache_vs_cache", recompute, chunk, 1e-5, diffs)
    log.info("released parity max |diff|: %s", json.dumps({k: f"{v:.2e}" for k, v in diffs.items()}))
