"""WallPolicy(on_invalid="hold"): a discrete chunk that stays invalid becomes a chunk that keeps the robot where
it is (the observation's state for absolute-position action dims, 0 for delta dims), counted as ``held``; a
robot whose embodiment spec cannot say is an error at construction."""

import numpy as np
import pytest

import wall_data as wd
from wall_core.policy import WallPolicy
from wall_core.processing import DefaultPrompt, Normalize, build_pipeline
from wall_core.processing.layout import hold_sources

H = 8


class AlwaysInvalid:
    """Stands in for ``WallVLA.generate_action_tokens``: every decode (greedy or sampled) is undecodable."""

    def __init__(self, vocab_size):
        self.bad, self.calls = [vocab_size - 1] * 3, []

    def __call__(self, batch, max_new_tokens=64, temperature=0.0, **_):
        self.calls.append(temperature)
        return [self.bad for _ in range(batch.batch_size)]


def _spec():
    """39 state dims, 4 actions: joint0/joint1/joint2 absolute (named like state dims), dz a delta."""
    state = ("joint0", "joint1", "joint2") + tuple(f"s{i}" for i in range(3, 39))
    return wd.EmbodimentSpec(
        "toy_arm", state, ("joint0", "dz", "joint2", "joint1"), meta={"delta_actions": ["dz"]}
    )


def test_hold_repeats_the_state_for_absolute_dims_and_zero_for_deltas(setup):
    model, proc, samples = setup
    pipe = build_pipeline(
        model, stats=proc.find(Normalize).stats, action_tokenizer=proc.find(DefaultPrompt).action_tokenizer,
        embodiments={"sim": _spec()},
    )  # fmt: skip
    assert hold_sources(_spec()).tolist() == [0, -1, 2, 1]
    fake = AlwaysInvalid(model.config.num_action_tokens)
    model.generate_action_tokens = fake
    policy = WallPolicy(model, pipe, mode="discrete", on_invalid="hold", discrete_retries=2)
    obs = {k: v for k, v in samples[0].items() if k not in ("action", "action_is_pad")}
    out = policy.infer(obs)["actions"]
    state = np.asarray(samples[0]["observation.state"], dtype=np.float32)
    want = np.tile(np.array([state[0], 0.0, state[2], state[1]], dtype=np.float32), (H, 1))
    np.testing.assert_array_equal(out, want)  # exactly the state: held in raw units, not re-normalised
    assert fake.calls == [0.0, 0.7, 0.7]  # greedy, then the two sampled retries, then hold
    assert policy.discrete_counts == {
        "invalid": 1,
        "retried_valid": 0,
        "flow_fallback": 0,
        "refused": 0,
        "held": 1,
    }


def test_hold_needs_a_spec_that_says_how(setup):
    model, proc, _ = (
        setup  # conftest's robot is packed from its stats: action_0.. / state_0.., nothing matches
    )
    with pytest.raises(
        ValueError,
        match=r"on_invalid='hold'.*robot 'sim'.*\['action_0', 'action_1', 'action_2', 'action_3'\]",
    ):
        WallPolicy(model, proc, mode="discrete", on_invalid="hold")
    half = wd.EmbodimentSpec("half", ("joint0",), ("joint0", "grip"))
    with pytest.raises(ValueError, match=r"robot 'half'.*\['grip'\].*delta_actions"):
        hold_sources(half)
