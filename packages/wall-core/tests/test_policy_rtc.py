"""Real-time chunking in WallPolicy.infer: the prefix is followed, delay 0 is plain sampling, bad prefixes refused."""

import numpy as np
import pytest
import torch

from wall_core.policy import WallPolicy

D = 3


def _obs(setup):
    model, pipe, samples = setup
    return model, pipe, {k: v for k, v in samples[0].items() if k not in ("action", "action_is_pad")}


def test_preprocess_actions_inverts_postprocess(setup):
    _, pipe, _ = _obs(setup)
    robot = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    back = pipe.postprocess(pipe.preprocess_actions(robot, "sim"), "sim")
    torch.testing.assert_close(back, robot, rtol=1e-5, atol=1e-5)


def test_guided_chunk_follows_the_prefix_and_delay_zero_is_plain(setup):
    model, pipe, obs = _obs(setup)
    plain = WallPolicy(model, pipe, seed=3).infer(obs)["actions"]  # [8, 4] robot units
    # a prefix far from what the policy samples on its own: the plain chunk shifted by 0.3 (robot units)
    prefix = plain[:6] + 0.3
    guided = WallPolicy(model, pipe, seed=3).infer(obs, prefix_actions=prefix, delay=D)["actions"]
    err_plain = float(np.abs(plain[:D] - prefix[:D]).mean())
    err_guided = float(np.abs(guided[:D] - prefix[:D]).mean())
    assert err_plain == pytest.approx(0.3, abs=1e-5)
    assert err_guided < 0.1 * err_plain, (err_guided, err_plain)
    assert guided.shape == (8, 4) and np.isfinite(guided).all()
    # the last steps (no prefix there, W = 0) are not pulled onto the shifted prefix
    assert float(np.abs(guided[6:] - plain[6:]).mean()) < float(np.abs(guided[:D] - plain[:D]).mean())
    # delay 0: nothing is frozen, the chunk is the plain one bit for bit (same seed)
    zero = WallPolicy(model, pipe, seed=3).infer(obs, prefix_actions=prefix, delay=0)["actions"]
    assert np.array_equal(zero, plain)
    # beta = 0: no guidance, identical to plain sampling as well
    off = WallPolicy(model, pipe, seed=3, guidance_weight=0.0).infer(obs, prefix_actions=prefix, delay=D)
    np.testing.assert_allclose(off["actions"], plain, atol=1e-6)


@pytest.mark.parametrize(
    "prefix, delay, match",
    [
        (np.zeros((2, 4)), 3, "prefix_actions must be"),  # fewer than d actions
        (np.zeros((9, 4)), 3, "prefix_actions must be"),  # longer than the chunk
        (np.zeros((6, 3)), 3, "A_robot=4"),  # wrong robot width
        (np.zeros(4), 1, "prefix_actions must be"),  # no time axis
        (np.full((6, 4), np.nan), 3, "NaN"),
        (None, 2, "needs prefix_actions"),
        (np.zeros((6, 4)), -1, "delay must be"),
    ],
)
def test_bad_prefix_is_a_clear_error(setup, prefix, delay, match):
    model, pipe, obs = _obs(setup)
    with pytest.raises(ValueError, match=match):
        WallPolicy(model, pipe).infer(obs, prefix_actions=prefix, delay=delay)


def test_prefix_mode_executes_the_prefix_and_is_saved(setup, tmp_path):
    """rtc_mode="prefix" (training-time RTC): the first d actions are the prefix itself (robot units, up to the
    normalise/unnormalise round trip), the rest is sampled; the mode survives save/load."""
    model, pipe, obs = _obs(setup)
    plain = WallPolicy(model, pipe, seed=3).infer(obs)["actions"]
    prefix = plain[:6] + 0.3
    pol = WallPolicy(model, pipe, seed=3, rtc_mode="prefix")
    out = pol.infer(obs, prefix_actions=prefix, delay=D)["actions"]
    np.testing.assert_allclose(out[:D], prefix[:D], atol=1e-5)
    assert out.shape == (8, 4) and np.isfinite(out).all()
    assert float(np.abs(out[D:6] - prefix[D:6]).mean()) > 0.05  # only d steps are copied from the prefix
    again = WallPolicy(model, pipe, seed=3, rtc_mode="prefix").infer(obs, prefix_actions=prefix, delay=0)
    np.testing.assert_allclose(again["actions"], plain, atol=1e-6)  # d = 0: plain sampling
    pol.save_pretrained(tmp_path / "p")
    assert WallPolicy.from_pretrained(tmp_path / "p").rtc_mode == "prefix"
    with pytest.raises(ValueError, match="rtc_mode must be 'guidance' or 'prefix'"):
        WallPolicy(model, pipe, rtc_mode="inpaint")
