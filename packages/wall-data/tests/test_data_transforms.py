"""Relative actions (round trips, statistics) and Euler / matrix / 6-D rotation conversions."""

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_data.transforms import (
    euler_to_matrix,
    euler_to_rot6d,
    matrix_to_euler,
    matrix_to_rot6d,
    relative_action_stats,
    rot6d_to_euler,
    rot6d_to_matrix,
    to_absolute,
    to_relative,
)


def _angles(n, seed=0):
    """Random roll/yaw in (-pi, pi), pitch kept 0.1 rad away from +-pi/2 (no gimbal lock by construction)."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(-np.pi, np.pi, size=(n, 3))
    e[:, 1] = rng.uniform(-np.pi / 2 + 0.1, np.pi / 2 - 0.1, size=n)
    return e


def test_relative_known_values_and_round_trip():
    actions = np.array([[[1.0, 2.0, 9.0], [3.0, 4.0, 8.0]]])  # [B=1, H=2, A=3]
    state = np.array([[0.5, 1.0, 7.0, 100.0]])  # [B, S=4]
    rel = to_relative(actions, state, action_dims=[0, 1], state_dims=[0, 3])
    np.testing.assert_array_equal(rel, [[[0.5, -98.0, 9.0], [2.5, -96.0, 8.0]]])
    np.testing.assert_array_equal(to_absolute(rel, state, [0, 1], [0, 3]), actions)
    np.testing.assert_array_equal(actions, [[[1.0, 2.0, 9.0], [3.0, 4.0, 8.0]]])  # input untouched
    rng = np.random.default_rng(1)
    a, s = rng.normal(size=(4, 8, 7)), rng.normal(size=(4, 7))
    r = wd.RelativeActions((0, 1, 2, 3, 4, 5))
    back = r.decode(r.encode(a, s), s)
    assert np.abs(back - a).max() < 1e-12
    np.testing.assert_array_equal(r.encode(a, s)[..., 6], a[..., 6])  # gripper stays absolute
    single = to_relative(a[:, 0], s, [2])  # [B, A] single actions
    np.testing.assert_allclose(single[:, 2], a[:, 0, 2] - s[:, 2])


def test_relative_torch_matches_numpy():
    rng = np.random.default_rng(2)
    a, s = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 6))
    got = to_relative(torch.from_numpy(a), torch.from_numpy(s), [1, 3], [5, 0])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), to_relative(a, s, [1, 3], [5, 0]), atol=0)
    back = to_absolute(got.float(), torch.from_numpy(s).float(), [1, 3], [5, 0])
    assert (back.double() - torch.from_numpy(a)).abs().max() < 1e-6


def test_relative_errors_name_the_problem():
    a, s = np.zeros((2, 4, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"action dims \[5\]"):
        to_relative(a, s, [5])
    with pytest.raises(ValueError, match="pair one state index"):
        to_relative(a, s, [0, 1], [0])
    with pytest.raises(ValueError, match="repeat"):
        to_relative(a, s, [1, 1])
    with pytest.raises(ValueError, match=r"must be \[..., A\] or \[..., H, A\]"):
        to_relative(np.zeros((2, 1, 4, 3)), s, [0])


def test_relative_stats_match_brute_force():
    rng = np.random.default_rng(3)
    lengths, horizon = [5, 3, 7], 4
    ep = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)])
    n = len(ep)
    states, actions = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    st = relative_action_stats(actions, states, ep, horizon, [0], [2])
    rows = []
    for t in range(n):
        for k in range(horizon):
            if t + k < n and ep[t + k] == ep[t]:
                rows.append([actions[t + k, 0] - states[t, 2], actions[t + k, 1]])
    rows = np.array(rows)
    assert st.count == len(rows) == sum(min(horizon, L - i) for L in lengths for i in range(L))
    np.testing.assert_allclose(st.mean, rows.mean(0), atol=1e-12)
    np.testing.assert_allclose(st.std, rows.std(0), atol=1e-12)
    np.testing.assert_allclose(st.min, rows.min(0))
    np.testing.assert_allclose(st.max, rows.max(0))
    np.testing.assert_allclose(st.q99, np.quantile(rows, 0.99, axis=0))
    # a robot moving +1 per step with actions one step ahead: deltas are exactly k + 1
    pos = np.arange(10.0)[:, None]
    ramp = relative_action_stats(pos + 1, pos, np.zeros(10), 3, [0])
    assert ramp.min[0] == 1.0 and ramp.max[0] == 3.0 and ramp.count == 10 + 9 + 8
    np.testing.assert_allclose(ramp.mean, (10 * 1 + 9 * 2 + 8 * 3) / 27)
    with pytest.raises(ValueError, match="one N"):
        relative_action_stats(actions[:-1], states, ep, 2, [0])


def test_euler_matrix_known_values_and_scipy_parity():
    np.testing.assert_allclose(euler_to_matrix(np.zeros(3)), np.eye(3), atol=1e-15)
    yaw90 = euler_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(yaw90, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    roll90 = euler_to_matrix(np.array([np.pi / 2, 0.0, 0.0]))
    np.testing.assert_allclose(roll90, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-15)
    np.testing.assert_allclose(
        euler_to_rot6d(np.array([0.0, 0.0, np.pi / 2])), [0, 1, 0, -1, 0, 0], atol=1e-15
    )
    np.testing.assert_allclose(matrix_to_rot6d(np.eye(3)), [1, 0, 0, 0, 1, 0])
    e = _angles(200)
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation  # scipy is optional for wall-data
    np.testing.assert_allclose(euler_to_matrix(e), rotation.from_euler("xyz", e).as_matrix(), atol=1e-12)


def test_rotation_round_trips_numpy_and_torch():
    e = _angles(1000, seed=4)
    m = euler_to_matrix(e)
    assert np.abs(matrix_to_euler(m) - e).max() < 1e-6
    assert np.abs(rot6d_to_euler(euler_to_rot6d(e)) - e).max() < 1e-6
    assert np.abs(rot6d_to_matrix(matrix_to_rot6d(m)) - m).max() < 1e-6
    et = torch.from_numpy(e)
    mt = euler_to_matrix(et)
    assert isinstance(mt, torch.Tensor) and np.abs(mt.numpy() - m).max() < 1e-12
    assert (rot6d_to_euler(euler_to_rot6d(et)) - et).abs().max() < 1e-6
    np.testing.assert_allclose(matrix_to_euler(mt).numpy(), matrix_to_euler(m), atol=1e-12)
    r6 = euler_to_rot6d(et.float().reshape(10, 100, 3))  # batch dims and float32 work too
    assert r6.shape == (10, 100, 6) and r6.dtype == torch.float32
    assert (rot6d_to_euler(r6).reshape(-1, 3).double() - et).abs().max() < 1e-4


def test_rot6d_orthonormalises_and_gimbal_lock_keeps_the_rotation():
    rng = np.random.default_rng(5)
    noisy = matrix_to_rot6d(euler_to_matrix(_angles(50))) + rng.normal(scale=0.05, size=(50, 6))
    r = rot6d_to_matrix(noisy)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    grad_in = torch.tensor(noisy, requires_grad=True)
    rot6d_to_matrix(grad_in).sum().backward()
    assert torch.isfinite(grad_in.grad).all() and grad_in.grad.abs().sum() > 0
    locked = np.array([[0.3, np.pi / 2, -0.4], [0.2, -np.pi / 2, 1.1]])
    m = euler_to_matrix(locked)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(m)), m, atol=1e-9)
    with pytest.raises(ValueError, match="last dimension of 6"):
        rot6d_to_matrix(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\[..., 3, 3\]"):
        matrix_to_euler(np.zeros((3, 4)))
