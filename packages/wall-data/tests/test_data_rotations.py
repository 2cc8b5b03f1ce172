"""Euler <-> 6-D rotations as a data step: RotationConversion on arrays, convert_rotations on a dataset."""

import numpy as np
import pytest

import wall_data as wd
from wall_data.transforms import euler_to_rot6d

RNG = np.random.default_rng(7)


def angles(shape, rng=RNG):
    """Roll, yaw in (-pi, pi), pitch in (-pi/2, pi/2) away from gimbal lock: the range decode returns."""
    roll, yaw = rng.uniform(-np.pi, np.pi, shape), rng.uniform(-np.pi, np.pi, shape)
    pitch = rng.uniform(-np.pi / 2 + 1e-3, np.pi / 2 - 1e-3, shape)
    return np.stack([roll, pitch, yaw], -1)


def poses(shape, rng=RNG):
    """[..., 7]: xyz, roll-pitch-yaw, gripper."""
    return np.concatenate(
        [rng.normal(size=(*shape, 3)), angles(shape, rng), rng.uniform(0, 1, (*shape, 1))], -1
    )


# --- arrays ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("starts", [(3,), (0, 7), (0, 3)])
def test_encode_decode_round_trip_keeps_other_dims_in_place(starts):
    x = np.concatenate([poses((4, 50)), poses((4, 50))], -1)[..., :13]  # [4, 50, 13]
    for s in starts:
        x[..., s : s + 3] = angles((4, 50))
    c = wd.RotationConversion("observation.state", starts, dim=13)
    y = c.encode(x)
    assert y.shape == (4, 50, 13 + 3 * len(starts)) and y.dtype == np.float64
    np.testing.assert_allclose(c.decode(y), x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(c.encode(c.decode(y)), y, rtol=0, atol=1e-12)
    kept = [d for d in range(13) if not any(s <= d < s + 3 for s in starts)]
    new_kept = [d + 3 * sum(s < d for s in starts) for d in kept]  # each earlier triple grew by 3
    assert np.array_equal(y[..., new_kept], x[..., kept])
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(y[..., s + 3 * i : s + 3 * i + 6], euler_to_rot6d(x[..., s : s + 3]))


def test_known_values_and_dtypes():
    c = wd.RotationConversion("action", (1,))
    x = np.array([[5.0, 0, 0, 0, 9], [5.0, 0, 0, np.pi / 2, 9]], np.float32)  # identity; yaw 90 degrees
    y = c.encode(x)
    assert y.dtype == np.float32 and y.shape == (2, 8)
    np.testing.assert_allclose(y[0], [5, 1, 0, 0, 0, 1, 0, 9], atol=1e-7)
    # R = Rz(90 degrees): columns (0, 1, 0) and (-1, 0, 0)
    np.testing.assert_allclose(y[1], [5, 0, 1, 0, -1, 0, 0, 9], atol=1e-7)
    np.testing.assert_allclose(c.decode(y), x, atol=1e-6)
    assert c.encode(np.zeros(4, np.int64)).dtype == np.float64  # [D] works; ints become float64
    assert wd.RotationConversion("action", 2).starts == (2,)
    assert wd.RotationConversion("a", (5, 0)).starts == (0, 5)


def test_decode_orthonormalises_a_predicted_block():
    c = wd.RotationConversion("action", (0,), dim=3)
    x = angles((20,))
    y = c.encode(x) * 1.7 + RNG.normal(scale=1e-4, size=(20, 6))  # scaled, slightly off
    np.testing.assert_allclose(c.decode(y), x, atol=1e-3)


def test_names():
    c = wd.RotationConversion("observation.state", (3,), dim=7)
    old = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert c.names(old) == ["x", "y", "z", *(f"rot6d.{j}" for j in range(6)), "gripper"]
    two = wd.RotationConversion("action", (0, 3))
    names = ["left_ee_roll", "left_ee_pitch", "left_ee_yaw", "right.rx", "right.ry", "right.rz"]
    left, right = [f"left_ee_rot6d.{j}" for j in range(6)], [f"right.rot6d.{j}" for j in range(6)]
    assert two.names(names) == left + right
    assert wd.RotationConversion("a", (0,)).names(["rx", "ry", "rz"]) == [f"rot6d.{j}" for j in range(6)]
    with pytest.raises(ValueError, match=r"repeat the names \['rot6d.0'"):
        two.names(["roll", "pitch", "yaw", "rx", "ry", "rz"])
    with pytest.raises(ValueError, match="got 6 names for a feature of dim 7"):
        c.names(old[:6])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"starts": (5,), "dim": 7}, r"starting at \[5\] run past the feature's 7 dims .* s <= 4"),
        ({"starts": (0, 2)}, r"overlap: starts \[\(0, 2\)\] are less than 3 apart"),
        ({"starts": (0, 0)}, "overlap"),
        ({"starts": (-1,)}, "negative index"),
        ({"starts": ()}, "non-empty sequence of ints"),
        ({"starts": (1.0,)}, "non-empty sequence of ints"),
        ({"starts": (0,), "dim": 0}, "dim must be a positive int"),
        ({"starts": (0,), "convention": "zyx"}, "convention 'zyx' is not implemented"),
        ({"key": "", "starts": (0,)}, "key must be a feature name"),
    ],
)
def test_bad_declarations_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wd.RotationConversion(**{"key": "action", **kwargs})


def test_bad_inputs_are_refused():
    c = wd.RotationConversion("action", (3,), dim=7)
    x = poses((5,))
    with pytest.raises(
        ValueError, match=r"action: encode expects \[\.\.\., 7\] \(dim=7\), got shape \(5, 6\)"
    ):
        c.encode(x[:, :6])
    with pytest.raises(ValueError, match=r"decode expects \[\.\.\., 10\] .* got a last dimension of 7"):
        c.decode(x)
    with pytest.raises(ValueError, match=r"starting at \[3\] run past the feature's 5 dims"):
        wd.RotationConversion("action", (3,)).encode(x[:, :5])
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[2, 4] = bad
        with pytest.raises(
            ValueError, match=r"encode input holds NaN/inf \(1 values, first at index \(2, 4\)\)"
        ):
            c.encode(y)
    y = c.encode(x)
    y[1, 3:9] = [1, 0, 0, 2, 0, 0]  # parallel columns
    with pytest.raises(ValueError, match="6-D block at dims 3..8 has zero or parallel columns"):
        c.decode(y)
    y[1, 3:9] = np.nan
    with pytest.raises(ValueError, match="decode input holds NaN/inf"):
        c.decode(y)
    with pytest.raises(ValueError, match="needs a numeric array"):
        c.encode(np.array(["a"] * 7))
