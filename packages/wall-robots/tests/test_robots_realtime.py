"""Asynchronous execution with a simulated inference delay: which action runs at which step (by hand), the
RTC prefix handed to the policy, ensembling weights, and the jerk / boundary-jump metrics."""

import json
import math

import numpy as np
import pytest

import wall_robots as wr

H, S = 8, 4  # chunk length, execute_steps


class StepEnv:
    """Observation = the step counter; records every executed action; never succeeds."""

    def __init__(self, task="t"):
        self.task, self.received = task, []

    def reset(self, variant=0, seed=None):
        self.k = 0
        return {"observation.state": np.array([0.0], np.float32), "task": self.task}

    def step(self, action, render=True):
        self.received.append(np.asarray(action, float))
        self.k += 1
        return {"observation.state": np.array([self.k], np.float32), "task": self.task}, 0.0, False, {}


class CodePolicy:
    """Chunk k (k-th call) has action i = [100 k + i, step of the observation it was computed from].
    With a prefix (RTC) it records it and returns it for the first ``delay`` actions, as ideal guidance would."""

    def __init__(self):
        self.calls, self.prefixes = 0, []

    def infer(self, obs, prefix_actions=None, delay=0):
        step = float(obs["observation.state"][0])
        chunk = np.array([[100.0 * self.calls + i, step] for i in range(H)])
        if prefix_actions is not None:
            self.prefixes.append((np.asarray(prefix_actions).copy(), delay))
            chunk[:delay] = prefix_actions[:delay]
        self.calls += 1
        return {"actions": chunk}

    def reset(self):
        self.calls = 0


def _run(mode, delay, steps=14, **kw):
    env, policy = StepEnv(), CodePolicy()
    report = wr.evaluate(
        policy, ["t"], 1, lambda task: env, execute_steps=S, mode=mode, max_steps=steps, delay=delay, **kw
    )
    return np.array(env.received), policy, report


@pytest.mark.parametrize(
    "delay, codes, boundaries",
    [
        # d = 0: chunk k runs indices 0..3 at steps 4k..4k+3 (the synchronous schedule)
        (0, [0, 1, 2, 3, 100, 101, 102, 103, 200, 201, 202, 203, 300, 301], [4, 8, 12]),
        # d = 2: chunk k (computed at 4k) arrives at 4k+2 and runs its indices 2..5; chunk 0 runs 0..5
        (2, [0, 1, 2, 3, 4, 5, 102, 103, 104, 105, 202, 203, 204, 205], [6, 10]),
        # d = 4 = s: chunk 0 runs 0..7, then chunk k runs indices 4..7 from step 4k+4
        (4, [0, 1, 2, 3, 4, 5, 6, 7, 104, 105, 106, 107, 204, 205], [8, 12]),
    ],
)
def test_naive_async_schedule_by_hand(delay, codes, boundaries):
    executed, policy, report = _run("chunk", delay)
    np.testing.assert_array_equal(executed[:, 0], codes)
    # chunk k was computed from the observation of step 4k (not from the step it started to run)
    np.testing.assert_array_equal(executed[:, 1], [4 * (c // 100) for c in codes])
    assert policy.calls == math.ceil(14 / S)
    ep = report.episodes[0]
    jumps = [np.linalg.norm(executed[t] - executed[t - 1]) for t in boundaries]
    assert ep.boundary_jump == pytest.approx(np.mean(jumps))
    assert ep.jerk == pytest.approx(np.linalg.norm(np.diff(executed, n=2, axis=0), axis=1).mean())


def test_sync_chunk_mode_is_the_async_schedule_at_delay_zero():
    sync, _, rs = _run("chunk", None)
    async0, _, ra = _run("chunk", 0)
    np.testing.assert_array_equal(sync, async0)
    assert rs.episodes[0].boundary_jump == pytest.approx(ra.episodes[0].boundary_jump)


def test_rtc_passes_the_remaining_actions_of_the_chunk_in_use():
    executed, policy, report = _run("rtc", 2)
    # query 1 at step 4: chunk 0's indices 4..7 (codes 4..7, computed at step 0); query 2 at step 8: chunk 1's
    # indices 4..7 (codes 104..107, step 4)
    (p1, d1), (p2, d2) = policy.prefixes[:2]
    assert d1 == d2 == 2
    np.testing.assert_array_equal(p1, [[4, 0], [5, 0], [6, 0], [7, 0]])
    np.testing.assert_array_equal(p2, [[104, 4], [105, 4], [106, 4], [107, 4]])
    # the chunk's first d actions equal what ran meanwhile, so the executed sequence is naive's here
    np.testing.assert_array_equal(executed[:, 0], [0, 1, 2, 3, 4, 5, 102, 103, 104, 105, 202, 203, 204, 205])
    assert report.episodes[0].jerk is not None


def test_ensemble_async_weights_by_hand():
    executed, _, _ = _run("ensemble", 2, steps=12)
    # steps 6, 7: chunk 0 (6, 7) and chunk 1 (102, 103), equal weights at decay 0.01 -> close to 54, 55;
    # steps 8, 9: chunk 0 is used up and chunk 2 not there yet -> chunk 1 alone (104, 105)
    np.testing.assert_array_equal(executed[:6, 0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(executed[8:10, 0], [104, 105])
    w0, w1 = math.exp(0.01 * 6), math.exp(0.01 * 2)  # ages 6 and 2 at step 6
    assert executed[6, 0] == pytest.approx((w0 * 6 + w1 * 102) / (w0 + w1))
    chunker = wr.AsyncChunker(CodePolicy(), S, "ensemble", 2, decay=math.log(2) / 4, check_actions=False)
    env = StepEnv()
    obs = env.reset()
    acts = []
    for _ in range(7):
        acts.append(chunker.act(obs))
        obs = env.step(acts[-1])[0]
    assert acts[6][0] == pytest.approx((2 * 6 + 1 * 102) / 3)  # weights 2^(6/4) : 2^(2/4) = 2 : 1
    assert chunker.boundaries == [6]


def test_smoothness_by_hand_and_bad_schedules_refused():
    m = wr.smoothness(np.array([[0.0], [1.0], [3.0], [6.0]]), [2])
    assert m == {"jerk": pytest.approx(1.0), "boundary_jump": pytest.approx(2.0)}
    assert wr.smoothness(np.zeros((2, 1)), [5]) == {"jerk": None, "boundary_jump": None}
    with pytest.raises(ValueError, match="delay <= execute_steps"):
        wr.AsyncChunker(CodePolicy(), 2, "naive", 3)
    with pytest.raises(ValueError, match="H >= execute_steps \\+ delay"):
        wr.evaluate(CodePolicy(), ["t"], 1, lambda t: StepEnv(), execute_steps=6, max_steps=3, delay=4)
    with pytest.raises(ValueError, match="pass delay=d"):
        wr.evaluate(CodePolicy(), ["t"], 1, lambda t: StepEnv(), mode="rtc", max_steps=3)

    class Plain:
        def infer(self, obs):
            return {"actions": np.zeros((H, 1))}

        def reset(self):
            pass

    with pytest.raises(ValueError, match="takes no such arguments"):
        wr.AsyncChunker(Plain(), S, "rtc", 2)


def test_realtime_report_table_json_and_plot(tmp_path):
    rows = []
    for seed in (0, 1):
        for mode, strategy in (("chunk", "naive"), ("rtc", "rtc")):
            for d in (0, 2):
                _, _, report = _run(mode, d)
                rows.append(wr.sweep_row(report, strategy, d, seed))
    md = wr.write_realtime_report(rows, tmp_path)
    text = md.read_text()
    # naive d = 2: the boundary jumps of the hand schedule above (steps 6 and 10), the same for both seeds
    ex = np.array(
        [[c, 4 * (c // 100)] for c in [0, 1, 2, 3, 4, 5, 102, 103, 104, 105, 202, 203, 204, 205]], float
    )
    jump = np.mean([np.linalg.norm(ex[t] - ex[t - 1]) for t in (6, 10)])
    assert "| naive | 2 | 2 | 0±0% | " in text and f"| {jump:.3g}±0 |" in text
    assert (tmp_path / "realtime.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "realtime.json").read_text())["summary"]
    assert len(summary) == 4 and summary[1]["mean_boundary_jump"] == pytest.approx(jump)
