"""The whole pipeline: save -> load gives bit-equal batches, several robots with their own stats and layouts,
openpi names, strict errors, and the output side back to each robot's units."""

import dataclasses
import json
from dataclasses import fields

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.processing import DefaultPrompt, Normalize, Pipeline, PipelineLoadError, build_pipeline

H = 4


@pytest.fixture(scope="module")
def two_robots(stats_box):
    torch.manual_seed(0)
    cfg = WallVLAConfig(action_horizon=H, state_dim=8, action_dim=6, backbone_overrides={"num_layers": 1})
    model = WallVLA(cfg)
    stats = {
        "arm": {"observation.state": stats_box([0, 0, 0], [2, 2, 2]), "action": stats_box([0, 0], [2, 4])},
        "cart": {
            "observation.state": stats_box([-10] * 5, [10] * 5),
            "action": stats_box([-1, -1, -1], [1, 1, 1]),
        },
    }
    specs = {"cart": wd.EmbodimentSpec("cart", tuple("abcde"), ("x", "y", "z"), action_slots=(5, 0, 1))}
    return model, build_pipeline(model, stats=stats, embodiments=specs)


def _obs(dataset, state, action=None, **kw):
    s = {"dataset": dataset, "task": "go", "observation.state": np.asarray(state, np.float32),
         "observation.images.corner": np.full((64, 64, 3), 7, np.uint8), **kw}  # fmt: skip
    if action is not None:
        s["action"] = torch.as_tensor(action, dtype=torch.float32)
        s["action_is_pad"] = torch.tensor([False] * (H - 1) + [True])
    return s


def _equal(a, b):
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), f.name
        else:
            assert x == y, f.name


def test_save_load_gives_bit_equal_batches_and_outputs(setup, tmp_path):
    model, proc, samples = setup
    batch = proc(samples)
    again = Pipeline.from_pretrained(proc.save_pretrained(tmp_path / "p"))
    assert repr(again) == repr(proc)
    _equal(batch, again(samples))
    assert batch.dataset == ["sim"] * 4 + [""] and batch.state_mask[:4].sum(1).tolist() == [39] * 4
    assert batch.state_mask[4].sum() == 0 and batch.dof_mask[:4].sum(1).tolist() == [4] * 4
    acts = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(proc.postprocess(acts), again.postprocess(acts))
    codes = [(batch.labels[0][batch.segment[0] == 4] - model.host_vocab_size)[:-1].tolist()]
    for x, y in zip(proc.decode_action_tokens(codes), again.decode_action_tokens(codes)):
        assert torch.equal(x, y)
    manifest = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    assert manifest["format_version"] == 1 and [s["type"] for s in manifest["outputs"]] == [
        "CropToEmbodiment",
        "Unnormalize",
    ]


def test_load_errors_name_the_file_and_what_is_missing(setup, tmp_path):
    _, proc, _ = setup
    root = proc.save_pretrained(tmp_path / "p")
    manifest = json.loads((root / "pipeline.json").read_text())
    normalize = next(s for s in manifest["inputs"] if s["type"] == "Normalize")
    tensors = root / normalize["dir"] / "tensors.safetensors"
    tensors.rename(tmp_path / "moved")
    with pytest.raises(PipelineLoadError, match="tensors.safetensors lacks stats"):
        Pipeline.from_pretrained(root)
    (tmp_path / "moved").rename(tensors)
    manifest["inputs"][0]["type"] = "os.system"
    (root / "pipeline.json").write_text(json.dumps(manifest))
    with pytest.raises(
        PipelineLoadError, match=r"pipeline.json: inputs\[0\] has type 'os.system'.*not a registered"
    ):
        Pipeline.from_pretrained(root)
    (root / "pipeline.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(PipelineLoadError, match="format_version 99"):
        Pipeline.from_pretrained(root)
    with pytest.raises(FileNotFoundError, match="pipeline.json not found"):
        Pipeline.from_pretrained(tmp_path)


def test_each_robot_normalised_padded_and_masked_by_its_own_dataset(two_robots):
    _, pipe = two_robots
    arm = _obs("arm", [1.0, 2.0, 0.0], [[1.0, 1.0]] * H)
    cart = _obs("cart", [5.0] * 5, [[0.5, -0.5, 1.0]] * H)
    b = pipe([arm, cart])
    assert b.dataset == ["arm", "cart"]
    torch.testing.assert_close(b.state[0], torch.tensor([0.0, 1.0, -1.0, 0, 0, 0, 0, 0]))
    torch.testing.assert_close(b.state[1], torch.tensor([0.5] * 5 + [0.0] * 3))
    assert b.state_mask.sum(1).tolist() == [3, 5]
    assert b.dof_mask.tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1]]
    torch.testing.assert_close(b.actions[0, 0], torch.tensor([0.0, -0.5, 0, 0, 0, 0]))
    torch.testing.assert_close(b.actions[1, 0], torch.tensor([-0.5, 1.0, 0, 0, 0, 0.5]))  # slots (5, 0, 1)
    assert b.action_loss_mask.sum((1, 2)).tolist() == [2 * (H - 1), 3 * (H - 1)]
    with pytest.raises(KeyError, match="unknown dataset / robot 'boat'"):
        pipe([_obs("boat", [0.0] * 3)])
    with pytest.raises(KeyError, match="lacks 'dataset'"):  # two robots: no default
        pipe([{k: v for k, v in arm.items() if k != "dataset"}])


def test_postprocess_crops_and_unnormalises_to_each_robots_units(two_robots):
    _, pipe = two_robots
    padded = torch.tensor([[[0.5, 1.0, 9.0, 9.0, 9.0, -1.0]]] * 2)  # [2, 1, 6]
    arm = pipe.postprocess(padded[:1], "arm")
    torch.testing.assert_close(arm, torch.tensor([[[1.5, 4.0]]]))  # (y+1)(q99-q01)/2+q01
    cart = pipe.postprocess(padded[:1], "cart")
    torch.testing.assert_close(cart, torch.tensor([[[-1.0, 0.5, 1.0]]]))  # crop reads slots (5, 0, 1)
    mixed = pipe.postprocess(padded, ["arm", "cart"])
    assert [m.shape for m in mixed] == [(1, 2), (1, 3)]
    over = pipe.postprocess(torch.full((1, 1, 6), 2.0), "arm")  # never clamped on the way out
    torch.testing.assert_close(over, torch.tensor([[[3.0, 6.0]]]))


def test_missing_state_is_an_error_never_a_zero_chunk(two_robots):
    _, pipe = two_robots
    obs = _obs("arm", [0.0] * 3)
    del obs["observation.state"]
    with pytest.raises(KeyError, match=r"observation for 'arm' lacks \['observation.state'\]"):
        pipe([obs])


def test_openpi_names_give_the_same_batch(setup):
    _, proc, samples = setup
    s = samples[0]
    openpi = {"observation/image": s["observation.images.corner"], "observation/state": s["observation.state"],
              "prompt": s["task"], "actions": s["action"], "action_is_pad": s["action_is_pad"]}  # fmt: skip
    _equal(proc([s]), proc([openpi]))
    float_img = dict(s, **{"observation.images.corner": s["observation.images.corner"] / 255.0})
    assert torch.equal(proc([float_img]).images, proc([s]).images)  # float [0, 1] -> the same uint8 frame
    assert proc.contract()["robots"]["sim"]["observation"]["observation.state"] == "float [39]"


def test_state_mask_reaches_the_model_absent_dims_differ_from_zero(setup):
    """The state token sees [state ; state_mask]: a 39-D robot in the 40-D pad has mask[39] = 0, and flipping
    that mask bit changes the state embedding (absent and zero are told apart)."""
    model, pipe, samples = setup
    batch = pipe(samples[:2])
    assert (
        batch.state_mask is not None and batch.state_mask[:, :39].all() and not batch.state_mask[:, 39].any()
    )
    emb = model.embed_prefix(batch)
    ones = dataclasses.replace(batch, state_mask=torch.ones_like(batch.state_mask))
    is_state = batch.input_ids == model.ids["<|propri|>"]
    diff = (model.embed_prefix(ones) - emb)[is_state].abs().max()
    assert diff > 1e-4
    assert torch.equal(model.embed_prefix(ones)[~is_state], emb[~is_state])


def test_nan_marks_missing_dims_only_where_the_spec_allows_it(setup, tmp_path):
    model, proc, samples = setup
    spec = wd.EmbodimentSpec(
        "sim", tuple(f"s{i}" for i in range(39)), tuple("xyzg"), meta={"nan_is_missing": True}
    )
    tok = proc.find(DefaultPrompt).action_tokenizer
    pipe = build_pipeline(
        model, stats=proc.find(Normalize).stats, action_tokenizer=tok, embodiments={"sim": spec}
    )
    s = dict(samples[0])
    s["observation.state"] = np.array(s["observation.state"])
    s["observation.state"][5] = np.nan  # a state dim the robot did not measure
    s["action"] = np.array(s["action"])
    s["action"][2, 1] = np.nan  # one missing action entry
    batch, full = pipe([s]), pipe([samples[0]])
    assert batch.state_mask[0].nonzero()[:, 0].tolist() == [i for i in range(39) if i != 5]
    assert (
        batch.state[0, 5] == 0 and torch.isfinite(batch.state).all() and torch.isfinite(batch.actions).all()
    )
    assert torch.equal(batch.state[0, :5], full.state[0, :5]) and torch.equal(
        batch.state[0, 6:], full.state[0, 6:]
    )
    changed = (batch.action_loss_mask != full.action_loss_mask).nonzero().tolist()
    assert (
        changed == [[0, 2, 1]] and batch.action_loss_mask[0, 2, 1] == 0
    )  # only the missing entry unweighted
    assert (
        batch.segment == 4
    ).sum() > 0  # the discrete tokens of the chunk are still there (NaN encoded as 0)
    _equal(batch, Pipeline.from_pretrained(pipe.save_pretrained(tmp_path / "p"))([s]))  # permission is saved
    with pytest.raises(ValueError, match=r"contains NaN/inf \(dataset 'sim'\).*nan_is_missing"):
        proc([s])  # the same sample for a robot whose spec does not allow NaN
