"""Statistics in LeRobot's stats.json format, zero-range dims, per-dataset normaliser sets."""

import json

import numpy as np
import pytest
import torch

import wall_data as wd


def test_stats_have_lerobot_quantiles_and_camera_stats(toy):
    raw = json.loads((toy / "meta/stats.json").read_text())
    for key in ("observation.state", "action", "observation.images.cam", "observation.images.wrist"):
        assert set(raw[key]) == {"mean", "std", "min", "max", "count", "q01", "q10", "q50", "q90", "q99"}
        assert isinstance(raw[key]["count"], list) and len(raw[key]["count"]) == 1
    cam = wd.load_stats(toy / "meta/stats.json")["observation.images.cam"]
    for name in ("mean", "std", "min", "max", "q01", "q10", "q50", "q90", "q99"):
        v = getattr(cam, name)
        assert v.shape == (3, 1, 1) and v.min() >= 0 and v.max() <= 1
    # the toy video frame i is uniformly 10*i (i < 12) -> pixel values 0..110 / 255, all channels equal
    assert cam.min.ravel() == pytest.approx([0, 0, 0], abs=3 / 255)
    assert cam.max.ravel() == pytest.approx([110 / 255] * 3, abs=3 / 255)
    assert cam.mean.ravel() == pytest.approx([55 / 255] * 3, abs=3 / 255)
    assert cam.count == 36  # every frame of the 3 short episodes is sampled
    wrist = wd.load_stats(toy / "meta/stats.json")["observation.images.wrist"]
    assert wrist.q50.ravel() == pytest.approx([50 / 255] * 3)  # episodes 0/1/2 hold 0/50/100
    act = wd.load_stats(toy / "meta/stats.json")["action"]  # action = (episode, frame)
    np.testing.assert_allclose(act.q50, [1, 5.5])
    np.testing.assert_allclose(act.q10[1], np.quantile(np.tile(np.arange(12.0), 3), 0.1))
    np.testing.assert_allclose(act.q90[1], np.quantile(np.tile(np.arange(12.0), 3), 0.9))


def test_load_stats_reads_old_files_without_extra_quantiles(tmp_path):
    old = {
        "action": {
            "mean": [0.0, 1.0],
            "std": [1.0, 1.0],
            "min": [-1.0, 0.0],
            "max": [1.0, 2.0],
            "q01": [-0.9, 0.1],
            "q99": [0.9, 1.9],
            "count": 10,
        }
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    s = wd.load_stats(tmp_path / "old.json")["action"]
    assert s.q10 is None and s.count == 10 and s.q99.tolist() == [0.9, 1.9]
    norm = wd.Normalizer({"action": s}, ["action"], "quantile")
    assert norm.normalize({"action": np.array([0.9, 0.1])})["action"].tolist() == [1.0, -1.0]
    with pytest.raises(KeyError, match="needs q10/q90"):
        wd.Normalizer({"action": s}, ["action"], "quantile10")
    (tmp_path / "nan.json").write_text(json.dumps({"action": {**old["action"], "q99": [float("nan"), 1]}}))
    with pytest.raises(ValueError, match=r"nan.json: feature 'action': .*q99"):
        wd.load_stats(tmp_path / "nan.json")


def test_quantile10_mode_maps_q10_q90_to_unit_range():
    x = np.random.default_rng(0).normal(size=(4000, 2))
    stats = wd.compute_stats({"action": x})
    y = wd.Normalizer(stats, ["action"], "quantile10").normalize({"action": stats["action"].q90[None]})
    np.testing.assert_allclose(y["action"], [[1.0, 1.0]], atol=1e-6)
    z = wd.Normalizer(stats, ["action"], "quantile10").normalize({"action": stats["action"].q50[None]})
    assert np.abs(z["action"]).max() < 0.05  # the median of a normal sits mid-way between q10 and q90


def test_constant_dims_use_unit_range_like_the_release():
    x = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    x[:, 1] = 0.25  # dim 1 never moved: q01 == q99
    stats = wd.compute_stats({"action": x})
    assert stats["action"].q01[1] == stats["action"].q99[1]
    for mode in ("quantile", "minmax"):
        norm = wd.Normalizer(stats, ["action"], mode)
        probe = np.array([[0.0, 0.25, 0.0], [0.0, 0.35, 0.0], [0.0, 0.2, 0.0]])
        y = norm.normalize({"action": probe})["action"]
        # released rule: delta == 0 -> 1, x_n = (x - min) / 1 * 2 - 1; a 0.1 deviation moves 0.2, not to +-1
        np.testing.assert_allclose(y[:, 1], [-1.0, -0.8, -1.0], atol=1e-6)
        back = norm.unnormalize({"action": y})["action"]
        np.testing.assert_allclose(back[:2, 1], [0.25, 0.35], atol=1e-6)
        yt = norm.normalize({"action": torch.tensor(probe, dtype=torch.float32)})["action"]
        np.testing.assert_allclose(yt.numpy(), y, atol=1e-6)
    z = wd.Normalizer(stats, ["action"], "zscore").normalize({"action": np.array([0.0, 0.35, 0.0])})
    assert z["action"][1] == pytest.approx(0.1, abs=1e-6)  # std 0 -> 1


def _stats(lo, hi):
    x = np.linspace(lo, hi, 101)[:, None] * np.ones((1, 2))
    return wd.compute_stats({"action": x, "observation.state": x})


def test_normalizer_set_looks_up_each_sample_by_dataset(tmp_path):
    ns = wd.NormalizerSet({"a": _stats(0, 10), "b": _stats(-1, 1)}, ["action"])
    qa, qb = _stats(0, 10)["action"], _stats(-1, 1)["action"]
    one = ns.normalize({"action": np.array([qa.q99[0], qa.q01[1]]), "dataset": "a"})
    np.testing.assert_allclose(one["action"], [1.0, -1.0], atol=1e-6)
    batch = {
        "action": torch.tensor([[qa.q99[0]] * 2, [qb.q99[0]] * 2, [qb.q01[0]] * 2]),
        "dataset": ["a", "b", "b"],
    }
    y = ns.normalize(batch)["action"]
    np.testing.assert_allclose(y.numpy(), [[1, 1], [1, 1], [-1, -1]], atol=1e-6)
    back = ns.unnormalize({"action": y, "dataset": ["a", "b", "b"]})["action"]
    np.testing.assert_allclose(back.numpy(), batch["action"].numpy(), atol=1e-5)
    with pytest.raises(KeyError, match="no normalisation statistics for dataset 'c'"):
        ns.normalize({"action": np.zeros(2), "dataset": "c"})
    with pytest.raises(KeyError, match="no 'dataset' field"):
        ns.normalize({"action": np.zeros(2)})
    with pytest.raises(KeyError, match="dataset 'b'.*no statistics"):
        wd.NormalizerSet(
            {"a": _stats(0, 1), "b": {"action": _stats(0, 1)["action"]}}, ["action", "observation.state"]
        )
    ns.save(tmp_path / "ns.json")
    again = wd.NormalizerSet.load(tmp_path / "ns.json")
    np.testing.assert_allclose(again.normalize(batch)["action"].numpy(), y.numpy(), atol=1e-6)
    md = ns.to_min_delta()
    assert set(md["action"]) == {"min.a", "delta.a", "min.b", "delta.b"}
    rel = wd.NormalizerSet.from_min_delta(md)
    np.testing.assert_allclose(rel.normalize(batch)["action"].numpy(), y.numpy(), atol=1e-5)
