"""Discrete decoding in WallPolicy: an invalid greedy decode is retried by sampling, and a chunk that stays
invalid is never returned as actions (flow fallback, or refused)."""

import json

import numpy as np
import pytest
import torch

from wall_core.cli import build_parser, main
from wall_core.model import WallVLA
from wall_core.policy import WallPolicy
from wall_core.processing import DefaultPrompt
from wall_robots.robot import UnsafeActionError


class FakeDecoder:
    """Stands in for ``WallVLA.generate_action_tokens``: greedy (temperature 0) gives an undecodable code
    sequence; sampling gives a valid one when ``fixable``. Records the temperatures it was called with."""

    def __init__(self, tok, fixable):
        self.good = tok.encode(np.zeros((1, 8, 4)))[0].tolist()  # the all-zero chunk
        self.bad = [tok.vocab_size - 1] * 3
        self.fixable, self.calls = fixable, []

    def __call__(self, batch, max_new_tokens=64, temperature=0.0, top_p=1.0, generator=None, use_cache=True):
        self.calls.append(temperature)
        row = self.good if (temperature > 0 and self.fixable) else self.bad
        return [row for _ in range(batch.batch_size)]


def _policy(setup, fixable=True, **kw):
    model, pipe, samples = setup
    obs = {k: v for k, v in samples[0].items() if k not in ("action", "action_is_pad")}
    tok = pipe.find(DefaultPrompt).action_tokenizer
    fake = FakeDecoder(tok, fixable)
    model.generate_action_tokens = fake
    return WallPolicy(model, pipe, mode="discrete", **kw), obs, fake, tok


def test_invalid_greedy_decode_is_retried_by_sampling(setup):
    policy, obs, fake, tok = _policy(setup)
    assert not tok.decode([np.asarray([tok.vocab_size - 1] * 3)]).valid[0]  # the greedy codes are invalid
    out = policy.infer(obs)["actions"]
    assert np.isfinite(out).all() and out.shape == (8, 4)
    assert fake.calls == [0.0, 0.7]  # one greedy decode, one sampled retry at the paper's temperature
    assert policy.discrete_counts == {
        "invalid": 1, "retried_valid": 1, "flow_fallback": 0, "refused": 0, "held": 0
    }  # fmt: skip
    zero = policy.pipeline.postprocess(torch.zeros(1, 8, 8), ["sim"])[
        0
    ].numpy()  # the all-zero chunk, unnormalised
    np.testing.assert_allclose(out, zero, atol=1e-2)  # FAST rounding of an all-zero chunk


def test_still_invalid_falls_back_to_flow_or_is_refused(setup):
    policy, obs, _, _ = _policy(setup, fixable=False, discrete_retries=2)
    out = policy.infer(obs)["actions"]
    flow = WallPolicy(policy.model, policy.pipeline, mode="flow").infer(obs)["actions"]
    np.testing.assert_allclose(out, flow, atol=1e-5)  # the flow chunk (same seed), not the invalid decode
    assert policy.discrete_counts["flow_fallback"] == 1 and policy.discrete_counts["retried_valid"] == 0
    refusing = WallPolicy(policy.model, policy.pipeline, mode="discrete", on_invalid="refuse")
    with pytest.raises(UnsafeActionError, match="nothing was executed"):
        refusing.infer(obs)
    assert refusing.discrete_counts["refused"] == 1


def test_bad_discrete_options_are_refused(setup):
    model, pipe, _ = setup
    with pytest.raises(ValueError, match="on_invalid"):
        WallPolicy(model, pipe, mode="discrete", on_invalid="hold")
    with pytest.raises(ValueError, match="retry_temperature"):
        WallPolicy(model, pipe, mode="discrete", retry_temperature=0)


def test_wall_eval_takes_the_discrete_options_and_reports_the_counts(setup, tmp_path, monkeypatch):
    pytest.importorskip("metaworld")
    a = build_parser().parse_args(["eval", "--policy", "p"])
    assert (a.discrete_retries, a.retry_temperature, a.on_invalid) == (3, 0.7, "flow")
    model, pipe, _ = setup
    folder = WallPolicy(model, pipe).save_pretrained(tmp_path / "p")
    bad = [model.config.num_action_tokens - 1] * 3  # undecodable, greedy or sampled
    temps = []

    def always_invalid(self, batch, max_new_tokens=64, temperature=0.0, **_):
        temps.append(temperature)
        return [bad for _ in range(batch.batch_size)]

    monkeypatch.setattr(WallVLA, "generate_action_tokens", always_invalid)
    out = tmp_path / "eval"
    args = ["eval", "--policy", str(folder), "--mode", "discrete", "--episodes", "1", "--max-steps", "8",
            "--discrete-retries", "2", "--retry-temperature", "0.5", "--on-invalid", "refuse", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert temps == [0.0, 0.5, 0.5]  # greedy, then the two sampled retries at the given temperature
    ev = json.loads((out / "eval.json").read_text())
    assert ev["discrete_counts"] == {
        "invalid": 1,
        "retried_valid": 0,
        "flow_fallback": 0,
        "refused": 1,
        "held": 0,
    }
    assert (
        ev["per_task"]["reach-v3"]["refused_chunks"] == 1
    )  # the refused chunk ended the episode, unexecuted
    assert ev["episodes"][0]["steps"] == 0 and "discrete_counts" in (out / "eval.md").read_text()
