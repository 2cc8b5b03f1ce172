"""The AR normaliser tensors of an author checkpoint (assumed ``action_preprocessor.normalizer_ar.{min,delta}.
<dataset>``, the pattern of the other two; unverified against the release) survive author -> ours -> author bit
for bit, become the ``action_ar`` ranges, stay out of the flow pipeline and of LeRobot's stats."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from wall_core.convert import (
    AR_FEATURE,
    ar_ranges,
    convert_checkpoint,
    feature_stats,
    load_norm_stats,
    normalizer_to_stats,
    read_tensors,
    split_normalizer_keys,
    stats_to_lerobot,
    stats_to_normalizer,
    write_tensors,
)
from wall_core.processing import Normalize, NormalizeAR, Pipeline

FIX = Path(os.environ.get("WALL_OSS_05_FIXTURE", Path(__file__).parent / "data" / "wall_oss_05" / "A"))
AR = "action_preprocessor.normalizer_ar"


def _with_ar(sd):
    """Fixture A's tensors + an AR normaliser for x2_normal that differs from the flow one (wider, bf16 min)."""
    lo = sd["action_preprocessor.normalizer_action.min.x2_normal"]
    delta = sd["action_preprocessor.normalizer_action.delta.x2_normal"]
    return {**sd, f"{AR}.min.x2_normal": (lo - 0.5).to(torch.bfloat16), f"{AR}.delta.x2_normal": delta * 2}


def test_ar_normaliser_round_trips_and_maps_to_action_ar(tmp_path):
    src = tmp_path / "author"
    src.mkdir()
    shutil.copy(FIX / "config.json", src / "config.json")
    orig = _with_ar(read_tensors(FIX))
    write_tensors(orig, src / "model.safetensors")
    convert_checkpoint(src, tmp_path / "ours", to="ours")
    stats, dtypes = load_norm_stats(tmp_path / "ours" / "norm_stats.safetensors")
    ar = stats["x2_normal"][AR_FEATURE]
    assert torch.equal(ar["q01"], orig[f"{AR}.min.x2_normal"].double())
    assert torch.equal(ar["q99"] - ar["q01"], orig[f"{AR}.delta.x2_normal"].double())
    assert dtypes[f"{AR}.min.x2_normal"] == "bfloat16"
    convert_checkpoint(tmp_path / "ours", tmp_path / "back", to="author")
    back = read_tensors(tmp_path / "back")
    assert sorted(back) == sorted(orig)
    for k in orig:
        assert back[k].dtype == orig[k].dtype and torch.equal(back[k], orig[k]), k
    # the flow pipeline of the converted policy folder has no AR feature; ar_ranges gives the AR ranges
    pipe = Pipeline.from_pretrained(tmp_path / "ours" / "pipeline")
    assert sorted(pipe.find(Normalize).stats["x2_normal"]) == ["action", "observation.state"]
    lo, hi = ar_ranges(stats)["x2_normal"]
    step = NormalizeAR(ar_ranges(stats))
    assert torch.equal(step.ranges["x2_normal"][0], torch.from_numpy(lo)) and (hi > lo).all()
    assert AR_FEATURE not in feature_stats(stats)["x2_normal"]
    assert not any(k.startswith(AR_FEATURE) for k in stats_to_lerobot(stats))
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.loads(
        (FIX / "config.json").read_text()
    )


def test_ar_normaliser_is_optional_but_must_be_whole():
    _, norm = split_normalizer_keys(_with_ar(read_tensors(FIX)))
    stats, dtypes = normalizer_to_stats(norm)
    assert sorted(stats["x2_normal"]) == ["action", AR_FEATURE, "observation.state"]
    out = stats_to_normalizer(stats, dtypes)
    assert sorted(out) == sorted(norm) and all(torch.equal(out[k], norm[k]) for k in norm)
    plain, _ = normalizer_to_stats({k: v for k, v in norm.items() if ".normalizer_ar." not in k})
    assert AR_FEATURE not in plain["x2_normal"]  # a release without an AR normaliser reads as before
    with pytest.raises(KeyError, match=r"normalizer_ar\.delta\.x2_normal"):
        normalizer_to_stats({k: v for k, v in norm.items() if "ar.delta" not in k})
    with pytest.raises(KeyError, match=r"normalizer_arx.*AR pattern assumed here"):
        normalizer_to_stats({**norm, "action_preprocessor.normalizer_arx.min.x2_normal": torch.zeros(26)})
