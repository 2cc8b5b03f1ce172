"""Several robots in one model: ALOHA (14 joints) and MetaWorld (4-D) in the canonical layout in one batch,
relative actions through the pipeline and back, and their statistics."""

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.processing import Pipeline, ToAbsoluteActions, build_pipeline, relative_dims, relative_stats

H = 4


@pytest.fixture(scope="module")
def multi(stats_box, two_robot_model):
    model, specs = two_robot_model(H)
    stats = {
        "aloha": {
            "observation.state": stats_box([-2] * 14, [2] * 14),
            "action": stats_box([-4] * 14, [4] * 14),
        },
        "metaworld": {
            "observation.state": stats_box([0] * 39, [1] * 39),
            "action": stats_box([-1] * 4, [1] * 4),
        },
    }
    rel = {"aloha": relative_dims(specs["aloha"], True)}
    return build_pipeline(model, stats=stats, embodiments=specs, relative=rel), rel["aloha"]


def _obs(dataset, state, action=None):
    s = {"dataset": dataset, "task": "go", "observation.state": np.asarray(state, np.float32),
         "observation.images.corner": np.full((64, 64, 3), 7, np.uint8)}  # fmt: skip
    if action is not None:
        s["action"] = torch.as_tensor(np.asarray(action), dtype=torch.float32)
        s["action_is_pad"] = torch.tensor([False] * (H - 1) + [True])
    return s


def test_aloha_and_metaworld_in_one_batch_get_canonical_slots_and_masks(multi):
    pipe, _ = multi
    aloha_state = np.linspace(-1, 1, 14)
    aloha = _obs("aloha", aloha_state, np.tile(aloha_state, (H, 1)))  # relative: joints 0, grippers absolute
    mw = _obs("metaworld", np.full(39, 0.75), [[0.5, -0.5, 0.25, 1.0]] * H)
    b = pipe([aloha, mw])
    assert b.dataset == ["aloha", "metaworld"]
    aloha_slots = [*range(6), 9, *range(10, 16), 19]
    assert np.flatnonzero(b.dof_mask[0].numpy()).tolist() == aloha_slots
    assert np.flatnonzero(b.dof_mask[1].numpy()).tolist() == [0, 1, 2, 9]
    assert np.flatnonzero(b.state_mask[0].numpy()).tolist() == aloha_slots
    assert np.flatnonzero(b.state_mask[1].numpy()).tolist() == [0, 1, 2, 9, *range(26, 61)]
    torch.testing.assert_close(b.state[0, aloha_slots], torch.as_tensor(aloha_state / 2, dtype=torch.float32))
    torch.testing.assert_close(b.state[1, 26:61], torch.full((35,), 0.5))
    assert b.state[:, 61:].abs().sum() == 0 and b.state[0, 20:].abs().sum() == 0
    # metaworld: dx dy dz in the left arm's first slots, gripper in the left-gripper slot
    torch.testing.assert_close(b.actions[1, 0, [0, 1, 2, 9]], torch.tensor([0.5, -0.5, 0.25, 1.0]))
    # aloha joints are relative (action == state -> 0); grippers stay absolute (x / 4)
    torch.testing.assert_close(
        b.actions[0, 0, [9, 19]], torch.tensor([aloha_state[6], aloha_state[13]], dtype=torch.float32) / 4
    )
    assert b.actions[0, 0, [*range(6), *range(10, 16)]].abs().max() < 1e-6
    assert b.action_loss_mask.sum((1, 2)).tolist() == [14 * (H - 1), 4 * (H - 1)]


def test_relative_actions_round_trip_through_the_pipeline(multi):
    pipe, rel = multi
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, 14)
    action = state + rng.uniform(-2, 2, (H, 14))
    b = pipe([_obs("aloha", state, action)])
    crop = [*range(6), 9, *range(10, 16), 19]
    expected = (action - np.where(np.isin(np.arange(14), rel.action_dims), state, 0.0)) / 4
    torch.testing.assert_close(b.actions[0][:, crop], torch.as_tensor(expected, dtype=torch.float32))
    states = pipe.raw_states([_obs("aloha", state)])
    back = pipe.postprocess(b.actions, "aloha", state=states)
    np.testing.assert_allclose(back[0].numpy(), action, atol=1e-5)  # absolute again, in the robot's units
    mw = pipe.postprocess(torch.full((1, H, 26), 0.5), "metaworld", state=[torch.zeros(39)])
    torch.testing.assert_close(mw, torch.full((1, H, 4), 0.5))  # not relative: state unused
    with pytest.raises(ValueError, match="'aloha' predicts relative actions: pass the observations' raw"):
        pipe.postprocess(b.actions, "aloha")
    assert relative_dims(wd.default_registry().get("aloha_bimanual"), True).action_dims == (
        *range(6),
        *range(7, 13),
    )
    with pytest.raises(ValueError, match="must name action dims that have a state dim"):
        relative_dims(wd.default_registry().get("metaworld_sawyer"), ["dx"])


def test_relative_steps_survive_save_and_load(multi, tmp_path):
    pipe, _ = multi
    again = Pipeline.from_pretrained(pipe.save_pretrained(tmp_path / "p"))
    step = again.find(ToAbsoluteActions)
    assert step.rel["aloha"] == pipe.find(ToAbsoluteActions).rel["aloha"]
    state = np.linspace(-1, 1, 14)
    obs = _obs("aloha", state, np.tile(state + 0.5, (H, 1)))
    torch.testing.assert_close(pipe([obs]).actions, again([obs]).actions)


def test_relative_stats_are_those_of_relative_chunks(tmp_path):
    feats = {
        "observation.state": {"dtype": "float32", "shape": [2]},
        "action": {"dtype": "float32", "shape": [2]},
    }
    w = wd.LeRobotWriter(tmp_path / "d", fps=10, features=feats)
    for ep in range(2):
        for i in range(6):  # state s_t = t + 10 ep; action a_t = s_t + 1 on dim 0, 100 + t on dim 1
            s = np.array([i + 10 * ep, 0.0])
            w.add_frame({"observation.state": s, "action": np.array([s[0] + 1, 100.0 + i])})
        w.save_episode(task="t")
    root = w.finalize()
    st = relative_stats(root, wd.RelativeActions((0,)), action_horizon=3)
    # relative dim 0: a_{t+k} - s_t = 1 + k for k < 3 inside an episode -> values 1, 2, 3
    assert st.min[0] == pytest.approx(1.0) and st.max[0] == pytest.approx(3.0)
    assert st.min[1] == pytest.approx(100.0) and st.max[1] == pytest.approx(105.0)  # absolute dim untouched


def test_a_flipped_camera_view_is_accepted(multi):
    pipe, _ = multi
    img = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    obs = {**_obs("metaworld", np.zeros(39)), "observation.images.corner": img[::-1]}  # negative strides
    plain = {**obs, "observation.images.corner": np.ascontiguousarray(img[::-1])}
    torch.testing.assert_close(pipe([obs]).images, pipe([plain]).images)
