"""Numerical parity with the released Wall-OSS-0.5 (fixture A: the reference implementation's outputs, fp32).

The checkpoint goes through ``wall convert`` into our layout, the ``wall-oss-0.5`` preset loads it strictly,
the released pipeline builds the batch from the raw fixture inputs, and every reference output is matched to
the README's tolerances; then fixture A's row, left-padded next to a robot with 2 cameras of other sizes and 6 of
26 DOFs, gives the single-row outputs, and masked DOFs / padded steps behave as the README says.
``WALL_OSS_05_FIXTURE`` points the test at another fixture folder of the same format.
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
from wall_core.processing import Normalize, PadToEmbodiment, embodiment_from_stats
from wall_core.processing.wall_oss_steps import ReleasedImages, build_released_pipeline

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


def _check_processor(model, pipe, batch, inp, record):
    """Processor side is exact: ids, m-RoPE positions, pixel patches, normalised actions, prompt text, slots."""
    p = record["sequence"]["prefix_length_P"]
    assert torch.equal(batch.input_ids, inp["input_ids"][:, :p]) and batch.valid.all()
    assert torch.equal(batch.position_ids, inp["position_ids"][:, :, :p])
    assert torch.equal(batch.pixel_values, inp["pixel_values"]) and torch.equal(
        batch.image_grid_thw, inp["image_grid_thw"]
    )
    # the pipeline normalises as (x - mid) / half-range: equal to LeRobot's 2 (x - q01) / range - 1 up to rounding
    assert float((batch.actions - inp["actions_normalized"]).abs().max()) < 1e-6
    tok = pipe.inputs[-2]
    text = tok.text_tokenizer.decode(batch.input_ids[0]) + "<|action|>" * 32
    assert text == record["prompts"][0]["text_passed_to_tokenizer"]
    slots = flow_positions(batch.position_ids, batch.valid, batch.segment, model.config.action_horizon)
    assert torch.equal(slots, inp["position_ids"][:, :, p:])  # action slots: ordinary 1-D text positions


def _check_prefix(model, batch, ref, diffs):
    """Vision features, per-layer / final prefix hidden states and LM logits; returns the prefix cache."""
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
    return cache


def _check_flow(model, batch, cache, inp, ref, diffs):
    """Expert hidden states, velocity, x_pred, the full forward and the flow loss at the fixture's t / x_t."""
    t, x_t = inp["t"], inp["x_t"]
    expert: list[torch.Tensor] = []
    hid = model.flow_hidden(x_t, t, cache, batch.dof_mask, collect=expert)
    _close("hidden_by_layer_actions", torch.stack(expert), ref["hidden_by_layer_actions"], ATOL, diffs)
    _close("final_hidden_actions", hid, ref["final_hidden_actions"], ATOL, diffs)
    v = model.flow_forward(x_t, t, cache, batch.dof_mask)
    _close("velocity", v, ref["velocity"], ATOL, diffs)
    _close("x_pred", x_t + (1 - t[:, None, None]) * v, ref["x_pred"], ATOL, diffs)
    out = model(batch, t=t, noise=inp["noise"], compute=("flow",))
    assert torch.equal(out.x0, inp["noise"])
    _close("forward_v_pred_vs_velocity", out.v_pred, ref["velocity"], ATOL, diffs)  # x_t from our actions
    loss = model.flow.loss(out.v_pred, out.x0, out.x1, out.t, out.action_loss_mask)
    rel = abs(float(loss) - float(ref["flow_loss"])) / abs(float(ref["flow_loss"]))
    diffs["flow_loss_rel"] = rel
    assert rel <= LOSS_RTOL, f"flow loss {float(loss)} vs {float(ref['flow_loss'])}"


def _check_euler(model, pipe, batch, sample, inp, ref, diffs):
    """Euler sampling from the fixture's noise: normalised and raw actions, cached equals uncached."""
    chunk = model.predict_actions(batch, noise=inp["noise"])
    _close("euler_actions_normalized", chunk, ref["euler_actions_normalized"], EULER_ATOL, diffs)
    raw = pipe.postprocess(chunk, sample["dataset"])
    _close("euler_actions_raw", raw, ref["euler_actions_raw"], EULER_ATOL, diffs)
    recompute = model.predict_actions(batch, noise=inp["noise"], use_cache=False)
    _close("euler_no_cache_vs_cache", recompute, chunk, 1e-5, diffs)


def test_released_parity_fp32(released):
    model, pipe, inp, ref, record = released
    sample = fixture_sample(inp, record)
    batch = pipe([sample])
    _check_processor(model, pipe, batch, inp, record)
    diffs: dict[str, float] = {}
    with torch.no_grad():
        cache = _check_prefix(model, batch, ref, diffs)
        _check_flow(model, batch, cache, inp, ref, diffs)
        _check_euler(model, pipe, batch, sample, inp, ref, diffs)
    log.info("released parity max |diff|: %s", json.dumps({k: f"{v:.2e}" for k, v in diffs.items()}))


FACE, WRIST = "observation.images.face_view", "observation.images.left_wrist_view"


def _steps(pipe, record):
    ds = record["normalisation"]["dataset_name"]
    norm = next(s for s in pipe.inputs if isinstance(s, Normalize))
    stats = {ds: norm.stats[ds], "arm6": _arm6_stats()}
    specs = {k: embodiment_from_stats(k, v) for k, v in stats.items()}
    proc = record["images"]["image_processor"]
    return [ReleasedImages([FACE, WRIST], proc["min_pixels"], proc["max_pixels"]), Normalize(stats),
            PadToEmbodiment(26, 26, 32, specs), pipe.inputs[-2]], pipe.inputs[-1]  # fmt: skip


def _arm6_stats():
    lo, hi = -torch.ones(6, dtype=torch.float64) * 2, torch.ones(6, dtype=torch.float64) * 3
    one = {"q01": lo, "q99": hi}
    return feature_stats({"arm6": {"action": dict(one), "observation.state": dict(one)}})["arm6"]


def _arm6_sample(gen):
    return {
        FACE: torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=gen),
        WRIST: torch.randint(0, 256, (3, 120, 90), dtype=torch.uint8, generator=gen),
        "observation.state": torch.rand(6, generator=gen) * 5 - 2,
        "action": torch.rand(32, 6, generator=gen) * 5 - 2,
        "action_is_pad": torch.arange(32) >= 28,
        "task": "stack the three blocks on the left side of the table, the largest one first",
        "dataset": "arm6",
    }


def test_left_padded_two_row_batch(released):
    model, pipe, inp, ref, record = released
    steps, collate = _steps(pipe, record)
    gen = torch.Generator().manual_seed(3)
    rows = []
    for s in (fixture_sample(inp, record), _arm6_sample(gen)):
        for step in steps:
            s = step(s)
        rows.append(s)
    batch = collate(rows)
    single = pipe([fixture_sample(inp, record)])
    pad = batch.input_ids.shape[1] - single.input_ids.shape[1]
    assert pad > 0 and not batch.valid[0, :pad].any() and batch.valid[1].all()  # row 0 is left-padded
    assert (
        batch.image_grid_thw.shape == (3, 3)
        and batch.image_grid_thw[1].tolist() != batch.image_grid_thw[2].tolist()
    )
    assert torch.equal(batch.input_ids[0, pad:], single.input_ids[0])
    assert (
        torch.equal(batch.position_ids[:, 0, pad:], single.position_ids[:, 0])
        and (batch.position_ids[:, 0, :pad] == 1).all()
    )
    assert batch.dof_mask[1].tolist() == [1.0] * 6 + [0.0] * 20
    noise = torch.cat([inp["noise"], torch.randn(1, 32, 26, generator=gen)])
    t = torch.cat([inp["t"], torch.tensor([0.8])])
    with torch.no_grad():
        cache = model.prefix_forward(batch)
        assert torch.isfinite(cache.hidden).all()  # fully masked pad rows stay finite
        logits = model.backbone.lm_head(cache.hidden[0:1, -3:])
        assert float((logits - ref["lm_logits_last3"]).abs().max()) < ATOL
        out = model(batch, t=t, noise=noise, compute=("flow",))
        assert float((out.v_pred[0] - ref["velocity"][0]).abs().max()) < ATOL
        chunk = model.predict_actions(batch, noise=noise)
        assert float((chunk[0] - ref["euler_actions_normalized"][0]).abs().max()) < 5e-4
        alone = model(single, t=t[:1], noise=noise[:1], compute=("flow",)).v_pred
        assert float((out.v_pred[0] - alone[0]).abs().max()) < ATOL  # row 0 in the batch == row 0 alone
        alone_chunk = model.predict_actions(single, noise=noise[:1])
        assert float((chunk[0] - alone_chunk[0]).abs().max()) < ATOL
        assert (chunk[1, :, 6:] == 0).all() and chunk[1, :, :6].abs().sum() > 0  # padded DOFs stay at zero
        # the loss: sum over dof_mask x ~action_is_pad entries / (B * 32 * 26), masked entries count as zero
        loss = model.flow.loss(out.v_pred, out.x0, out.x1, out.t, out.action_loss_mask)
        tt = t[:, None, None]
        x_pred = (1 - tt) * out.x0 + tt * out.x1 + (1 - tt) * out.v_pred
        err = (x_pred - out.x1) ** 2 * out.action_loss_mask
        assert torch.allclose(loss, err.sum() / (2 * 32 * 26), rtol=1e-6)
        assert int(out.action_loss_mask[1].sum()) == 28 * 6
        # padded trailing steps: out of the loss, and (causal action block) invisible to the earlier slots
        moved = batch.actions.clone()
        moved[1, 28:] -= 3.0
        batch.actions = moved
        out2 = model(batch, t=t, noise=noise, compute=("flow",))
        assert torch.equal(out2.v_pred[:, :28], out.v_pred[:, :28]) and not torch.equal(
            out2.v_pred, out.v_pred
        )
        loss2 = model.flow.loss(out2.v_pred, out2.x0, out2.x1, out2.t, out2.action_loss_mask)
        assert torch.allclose(loss, loss2, rtol=1e-6, atol=0)
