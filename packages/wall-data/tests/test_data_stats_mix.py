"""Streaming stats, normalisers, embodiments, mixtures and VQA corpora."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import wall_data as wd


def test_streaming_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4)) * [1, 2, 3, 4] + [0, 1, 2, 3]
    acc = wd.StatsAccumulator(reservoir=10_000)
    for part in np.array_split(x, 7):
        acc.update(part)
    s = acc.result()
    np.testing.assert_allclose(s.mean, x.mean(0), atol=1e-10)
    np.testing.assert_allclose(s.std, x.std(0), atol=1e-10)
    np.testing.assert_allclose(s.q01, np.quantile(x, 0.01, axis=0))
    assert s.count == 5000 and np.all(s.min == x.min(0))
    small = wd.StatsAccumulator(reservoir=1000)  # beyond the reservoir: quantiles are a sample estimate
    for part in np.array_split(x, 5):
        small.update(part)
    np.testing.assert_allclose(small.result().q99, np.quantile(x, 0.99, axis=0), rtol=0.15)
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.array([[np.nan] * 4]))


def test_stats_json_round_trip_and_written_by_writer(toy, tmp_path):
    stats = wd.load_stats(toy / "meta/stats.json")
    cams = {"observation.images.cam", "observation.images.wrist"}  # per-camera stats (issue 16)
    assert set(stats) == {"observation.state", "action"} | cams and stats["action"].max.tolist() == [2, 11]
    wd.save_stats(stats, tmp_path / "s.json")
    again = wd.load_stats(tmp_path / "s.json")
    np.testing.assert_array_equal(again["action"].q99, stats["action"].q99)
    with pytest.raises(FileNotFoundError, match="wall stats"):
        wd.load_stats(tmp_path / "missing.json")


@pytest.mark.parametrize("mode", ["quantile", "zscore", "minmax"])
def test_normalizer_round_trip_numpy_and_torch(mode):
    x = np.random.default_rng(1).uniform(-3, 5, size=(1000, 3))
    stats = wd.compute_stats({"action": x})
    norm = wd.Normalizer(stats, keys=["action"], mode=mode)
    y = norm.normalize({"action": x})["action"]
    if mode != "zscore":
        assert y.min() >= -1 and y.max() <= 1
    inside = (x > stats["action"].q01) & (x < stats["action"].q99)
    back = norm.unnormalize({"action": y})["action"]
    np.testing.assert_allclose(back[inside], x[inside], atol=1e-5)
    yt = norm.normalize({"action": torch.tensor(x, dtype=torch.float64)})["action"]
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
    with pytest.raises(KeyError, match="batch lacks 'action'"):
        norm.normalize({"state": x})
    with pytest.raises(KeyError, match="no statistics"):
        wd.Normalizer(stats, keys=["observation.state"])


def test_embodiments_pad_and_unpad():
    reg = wd.default_registry()
    sawyer = reg.get("metaworld_sawyer")
    assert sawyer.state_dim == 39 and sawyer.action_dim == 4
    space = wd.PaddedSpace(state_dim=40, action_dim=8)
    a, mask = space.pad_action(np.ones((5, 4)), sawyer)
    assert a.shape == (5, 8) and mask.tolist() == [True] * 4 + [False] * 4 and a[:, 4:].sum() == 0
    np.testing.assert_array_equal(space.unpad_action(a, sawyer), np.ones((5, 4)))
    arm = reg.get("arm7_gripper")
    _, m2 = space.pad_action(np.zeros(8), arm)
    assert m2.all()
    with pytest.raises(KeyError, match="unknown robot 'ur5'"):
        reg.get("ur5")
    with pytest.raises(ValueError, match="has 4 dims"):
        space.pad_action(np.ones(3), sawyer)
    with pytest.raises(ValueError, match="holds only"):
        wd.PaddedSpace(2, 2).pad_action(np.ones(4), sawyer)


def test_weighted_mixture_follows_weights(tmp_path, make_toy):
    a = wd.LeRobotDataset(make_toy(tmp_path / "a", video=False, image=False), action_horizon=2, name="a")
    b = wd.LeRobotDataset(make_toy(tmp_path / "b", video=False, image=False), action_horizon=2, name="b")
    mix = wd.WeightedMixture({"a": a, "b": b}, {"a": 3.0, "b": 1.0}, seed=0)
    it = iter(mix)
    names = [next(it)["dataset"] for _ in range(2000)]
    assert abs(names.count("a") / 2000 - 0.75) < 0.04
    it2 = iter(wd.WeightedMixture({"a": a, "b": b}, {"a": 3.0, "b": 1.0}, seed=0))
    assert names[:50] == [next(it2)["dataset"] for _ in range(50)]  # deterministic per seed
    with pytest.raises(KeyError, match="one weight per dataset"):
        wd.WeightedMixture({"a": a}, {"b": 1.0})


def test_vqa_corpus(tmp_path):
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "img.png")
    lines = [
        {"image": "img.png", "question": "What colour?", "answer": "grey"},
        {
            "images": ["img.png"],
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A"}],
        },
    ]
    (tmp_path / "vqa.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    ds = wd.VQADataset(tmp_path / "vqa.jsonl", image_size=(8, 8))
    s = ds[0]
    assert (
        s["observation.images.main"].shape == (3, 8, 8)
        and s["answer"] == "grey"
        and ds[1]["question"] == "Q?"
    )
    (tmp_path / "old.jsonl").write_text(json.dumps({"image": "img.png", "prompt": "Colour?", "answer": "g"}))
    old = wd.VQADataset(tmp_path / "old.jsonl")[0]  # "prompt" in the input is still read as the question
    assert old["question"] == "Colour?" and old["task"] == "Colour?" and old["answer"] == "g"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "missing.png", "question": "q", "answer": "a"}))
    with pytest.raises(FileNotFoundError, match="line 1"):
        wd.VQADataset(tmp_path / "bad.jsonl")


def test_indexed_mixture_is_a_pure_function_of_index(tmp_path, make_toy):
    a = wd.LeRobotDataset(make_toy(tmp_path / "a", video=False, image=False), action_horizon=2)
    b = wd.LeRobotDataset(make_toy(tmp_path / "b", video=False, image=False, episodes=1), action_horizon=2)
    mix = wd.IndexedMixture({"a": a, "b": b}, {"a": 1.0, "b": 3.0}, seed=7)
    names = [mix[i]["dataset"] for i in range(2000)]
    assert abs(names.count("b") / 2000 - 0.75) < 0.04
    again = wd.IndexedMixture({"a": a, "b": b}, {"a": 1.0, "b": 3.0}, seed=7)
    for i in (0, 5, 1999):
        assert torch.equal(mix[i]["action"], again[i]["action"]) and mix[i]["dataset"] == again[i]["dataset"]
