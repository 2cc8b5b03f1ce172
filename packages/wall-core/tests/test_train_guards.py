"""Training guards: URL resume refused, non-finite loss/gradients stop or skip, non-finite weights never exported."""

import pytest
import torch

from wall_core.training.guards import NonFiniteError, NonFiniteGuard, check_finite_weights, check_resume_path


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/last.ckpt", "https://x/y.ckpt", "s3://bucket/last.ckpt"]
)
def test_resume_from_url_is_refused(url):
    with pytest.raises(ValueError, match="URL"):
        check_resume_path(url)


def test_resume_from_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        check_resume_path(tmp_path / "nope.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"x")
    assert check_resume_path(tmp_path / "last.ckpt") == tmp_path / "last.ckpt"


def test_nonfinite_loss_stops_naming_step_and_term():
    guard = NonFiniteGuard("stop")
    terms = {"flow": torch.tensor(float("nan")), "text_ce": torch.tensor(1.0)}
    assert guard.loss_ok(torch.tensor(2.0), {"flow": torch.tensor(2.0)}, 3, None)
    with pytest.raises(NonFiniteError, match=r"step 5 \(terms \['flow'\]"):
        guard.loss_ok(torch.tensor(float("nan")), terms, 5, None)


def test_skip_mode_counts_and_stops_after_max_skips():
    guard = NonFiniteGuard("skip", max_skips=2)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.0, float("inf"), 1.0])
    assert not guard.grads_ok([("w", p)], 1) and not guard.grads_ok([("w", p)], 2)
    assert guard.skipped == 2
    with pytest.raises(NonFiniteError, match="gradient at step 3"):
        guard.grads_ok([("w", p)], 3)
    p.grad = torch.ones(3)
    assert guard.grads_ok([("w", p)], 4)


def test_nonfinite_weights_are_not_exported():
    check_finite_weights({"a": torch.ones(2), "steps": torch.tensor(3)})
    with pytest.raises(NonFiniteError, match=r"\['b'\]"):
        check_finite_weights({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")])})
