"""Issue 19 findings 3, 6, 7: a policy folder carries a format version and checksums, its config, weights and
pipeline are checked against each other on load, ``infer`` refuses non-finite / out-of-bounds chunks, and the
policy declares its observation contract (published by the server, which refuses observations that break it)."""

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import wall_robots as wr
from wall_core.policy import WallPolicy
from wall_core.policy_checks import PolicyLoadError, write_checksums

UNNORM = "pipeline/steps/out01_Unnormalize/tensors.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, make_once):
    model, pipe, samples = make_once()
    policy = WallPolicy(model, pipe)
    root = policy.save_pretrained(tmp_path_factory.mktemp("pol") / "p")
    obs = {k: v for k, v in samples[0].items() if k not in ("action", "action_is_pad")}
    return root, obs


@pytest.fixture
def folder(saved, tmp_path):
    import shutil

    return shutil.copytree(saved[0], tmp_path / "p")


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


def _edit_config(folder, fn):
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    fn(cfg)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_checksums(folder)  # a consistent folder: the config itself is what is wrong


def test_folder_has_version_and_checksums_and_round_trips(saved):
    root, obs = saved
    assert yaml.safe_load((root / "config.yaml").read_text())["format_version"] == 1
    files = json.loads((root / "checksums.json").read_text())["files"]
    assert {"config.yaml", "model.safetensors", "pipeline/pipeline.json", UNNORM} <= set(files)
    policy = WallPolicy.from_pretrained(root)
    out = policy.infer(obs)["actions"]
    assert out.shape == (8, 4) and np.isfinite(out).all() and policy.refused_chunks == 0


@pytest.mark.parametrize("rel", ["model.safetensors", "config.yaml", "pipeline/pipeline.json", UNNORM])
def test_a_flipped_bit_names_the_file(folder, rel):
    _flip(folder / rel, 3 * (folder / rel).stat().st_size // 4)
    with pytest.raises(PolicyLoadError, match=rel.split("/")[-1] + ".*sha256 differs"):
        WallPolicy.from_pretrained(folder)


def test_missing_or_unlisted_files(folder, caplog):
    (folder / "pipeline" / "extra.json").write_text("{}")
    with pytest.raises(PolicyLoadError, match="extra.json is not listed"):
        WallPolicy.from_pretrained(folder)
    (folder / "pipeline" / "extra.json").unlink()
    (folder / "checksums.json").unlink()
    with pytest.raises(PolicyLoadError, match="no checksums"):
        WallPolicy.from_pretrained(folder)
    with caplog.at_level(logging.WARNING):
        WallPolicy.from_pretrained(folder, verify_checksums=False)
    assert "without verifying its checksums" in caplog.text


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.pop("format_version"), "has no format_version"),
        (lambda c: c.update(format_version=99), "format_version 99"),
        (lambda c: c["model"].pop("action_dim"), r"lacks \['action_dim'\]"),
        (lambda c: c["model"].update(num_steps=20000), r"model.num_steps is 20000.*\[1, 1000\]"),
        (lambda c: c["policy"].update(num_steps=20000), r"policy.num_steps is 20000"),
        (lambda c: c["policy"].update(steps=3), r"unknown keys \['steps'\]"),
        (lambda c: c["model"].update(action_horizon=4), "horizon 8"),
    ],
)
def test_config_problems_are_errors(folder, edit, match):
    _edit_config(folder, edit)
    with pytest.raises(PolicyLoadError, match=match):
        WallPolicy.from_pretrained(folder)


def test_num_steps_cap_is_configurable(folder):
    _edit_config(folder, lambda c: c["policy"].update(num_steps=1500))
    with pytest.raises(PolicyLoadError, match="max_num_steps"):
        WallPolicy.from_pretrained(folder)
    assert WallPolicy.from_pretrained(folder, max_num_steps=2000).num_steps == 1500


def _edit_tensors(folder, rel, fn):
    tensors = load_file(str(folder / rel))
    fn(tensors)
    save_file(tensors, str(folder / rel))
    write_checksums(folder)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.update({k: v.to(torch.int64) for k, v in t.items()}), "integer weights are refused"),
        (
            lambda t: (
                next(v for v in t.values() if v.is_floating_point()).view(-1).__setitem__(0, float("nan"))
            ),
            "hold NaN/inf",
        ),  # fmt: skip
        (lambda t: t.pop(next(iter(t))), "missing"),
        (lambda t: t.update(extra=torch.zeros(2)), "unexpected"),
    ],
)
def test_weight_problems_are_errors(folder, edit, match):
    _edit_tensors(folder, "model.safetensors", edit)
    with pytest.raises(PolicyLoadError, match=match):
        WallPolicy.from_pretrained(folder)


@pytest.mark.parametrize("size", [0, 7, 100, "half"])
def test_truncated_weights_are_a_clear_error(folder, size):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if size == "half" else size])
    write_checksums(folder)
    with pytest.raises(PolicyLoadError, match="model.safetensors"):
        WallPolicy.from_pretrained(folder)


def _set_stat(name, value):
    def edit(t):
        t[f"sim|action|{name}"] = torch.full_like(t[f"sim|action|{name}"], value)

    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_set_stat("q01", float("nan")), "NaN/inf"),
        (_set_stat("q99", 1e308), "beyond 1e30"),
        (_set_stat("q01", 5.0), "q01 > q99"),
        (lambda t: [t.__setitem__(k, t["sim|action|q01"].clone()) for k in ["sim|action|q99"]], "constant"),
        (lambda t: t.update({k: v[:3] for k, v in t.items()}), "3 'action' stats dims"),
    ],
)
def test_stats_problems_are_errors(folder, edit, match):
    _edit_tensors(folder, UNNORM, edit)
    with pytest.raises(PolicyLoadError, match=match):
        WallPolicy.from_pretrained(folder)


def test_pipeline_without_unnormaliser_is_refused(folder):
    manifest = json.loads((folder / "pipeline/pipeline.json").read_text())
    manifest["outputs"] = manifest["outputs"][:1]
    (folder / "pipeline/pipeline.json").write_text(json.dumps(manifest))
    write_checksums(folder)
    with pytest.raises(PolicyLoadError, match="no unnormalisation step"):
        WallPolicy.from_pretrained(folder)


def test_contract_declares_keys_shapes_and_bounds(saved):
    policy = WallPolicy.from_pretrained(saved[0])
    c = policy.contract()
    assert isinstance(c, wr.ObservationContract)
    assert (c.robot, c.action_horizon, c.action_dim, c.cameras) == ("sim", 8, 4, ["corner"])
    assert c.features["observation.state"].shape == (39,) and c.features["task"].dtype == "str"
    st = policy.pipeline.outputs[-1].stats["sim"]["action"]
    lo, hi = np.minimum(st.min, st.q01), np.maximum(st.max, st.q99)
    np.testing.assert_allclose(c.action_low, lo - (hi - lo), rtol=1e-6)  # margin 1.0 x the range
    np.testing.assert_allclose(c.action_high, hi + (hi - lo), rtol=1e-6)
    wide = WallPolicy.from_pretrained(saved[0], action_margin=2.0).contract()
    np.testing.assert_allclose(wide.action_high, hi + 2 * (hi - lo), rtol=1e-6)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30, 40.0])
def test_infer_refuses_bad_chunks_and_counts(saved, value, caplog):
    policy = WallPolicy.from_pretrained(saved[0])
    policy.model.predict_actions = lambda batch, *a, **k: torch.full((1, 8, 8), value)
    with pytest.raises(wr.UnsafeActionError, match="nothing was executed"):
        policy.infer(saved[1])
    assert policy.refused_chunks == 1
    with caplog.at_level(logging.WARNING):
        off = WallPolicy.from_pretrained(saved[0], check_actions=False)
    assert "action checks disabled" in caplog.text
    off.model.predict_actions = policy.model.predict_actions
    assert off.infer(saved[1])["actions"].shape == (8, 4)  # opted out: passed through, as asked


def test_server_publishes_contract_and_refuses_bad_observations(saved):
    policy = WallPolicy.from_pretrained(saved[0])
    with wr.PolicyServer(policy) as server, wr.PolicyClient("127.0.0.1", server.port, timeout=30) as client:
        meta = client.metadata["observation_contract"]["sim"]
        assert meta["action_dim"] == 4 and meta["features"]["observation.state"]["shape"] == [39]
        assert client.infer(saved[1])["actions"].shape == (8, 4)
    bad = {**saved[1], "observation.state": np.zeros(5, np.float32)}
    server = wr.PolicyServer(policy).start()
    try:
        client = wr.PolicyClient("127.0.0.1", server.port, timeout=30)
        with client, pytest.raises(RuntimeError, match=r"observation.state.*shape \[5\]"):
            client.infer(bad)
    finally:
        server.stop()
