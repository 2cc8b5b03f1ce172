"""Guards around training: where a run may resume from, and what happens on a non-finite loss or gradient.

* :func:`check_resume_path` accepts only an existing local Lightning checkpoint file. Lightning hands a URL to
  ``torch.hub`` with ``weights_only=False`` (arbitrary code execution from a served file), so URLs and other
  remote schemes are refused; the trainer then loads the file with ``weights_only=True``.
* :class:`NonFiniteGuard` checks each step's loss and gradients. ``on_nonfinite="stop"`` (default) raises
  :class:`NonFiniteError` naming the step, the term(s) and the batch; ``"skip"`` drops that optimiser step
  (counted in :attr:`NonFiniteGuard.skipped`) and goes on.
* :func:`check_finite_weights` refuses to export a state dict with any NaN/inf tensor, naming the tensors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["NonFiniteError", "NonFiniteGuard", "check_finite_weights", "check_resume_path"]
logger = logging.getLogger(__name__)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class NonFiniteError(RuntimeError):
    """A loss, gradient or weight became NaN/inf; the message names where."""


def check_resume_path(path: str | Path) -> Path:
    """Return ``path`` as a local checkpoint file, or raise ``ValueError`` / ``FileNotFoundError``.

    Input: a filesystem path to a Lightning ``.ckpt`` (a file, or the folder of shards an fsdp2 run
    writes, recognised by its ``meta.pt``). URLs (``http://``, ``s3://``, ...) are refused: download
    the file yourself, check where it came from, and pass the local path.
    """
    text = str(path)
    if _SCHEME.match(text):
        raise ValueError(
            f"resume={text!r} is a URL; only local checkpoint files are accepted (a remote checkpoint would "
            "be unpickled). Download it, check its source, and pass the local path"
        )
    p = Path(text).expanduser()
    if p.is_dir() and (p / "meta.pt").is_file():  # a sharded (fsdp2) checkpoint folder
        return p
    if not p.is_file():
        raise FileNotFoundError(
            f"resume checkpoint {p} does not exist (expected out_dir/checkpoints/last.ckpt)"
        )
    return p


def _nonfinite(t: torch.Tensor) -> bool:
    return bool(t.is_floating_point() and not torch.isfinite(t).all())


def check_finite_weights(state_dict: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """Raise :class:`NonFiniteError` listing (up to 10) tensors of ``state_dict`` that hold NaN/inf."""
    bad = [k for k, v in state_dict.items() if torch.is_tensor(v) and _nonfinite(v)]
    if bad:
        raise NonFiniteError(
            f"{what} has non-finite values in {len(bad)} tensor(s), e.g. {bad[:10]}; refusing to export it. "
            "Lower the learning rate or check the data, then resume from an earlier checkpoint"
        )


class NonFiniteGuard:
    """Per-step finiteness checks used by the Lightning module.

    ``on_nonfinite``: ``"stop"`` raises, ``"skip"`` skips the optimiser step and counts it. ``max_skips`` bounds
    how many steps may be skipped before the run stops anyway (a run that only skips is not training).
    """

    def __init__(self, on_nonfinite: str = "stop", max_skips: int = 10) -> None:
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite, self.max_skips, self.skipped = on_nonfinite, int(max_skips), 0

    def _fail(self, msg: str) -> bool:
        if self.on_nonfinite == "stop" or self.skipped >= self.max_skips:
            raise NonFiniteError(
                msg + ("" if self.on_nonfinite == "stop" else f" ({self.skipped} skipped already)")
            )
        self.skipped += 1
        logger.warning("%s: skipping this optimiser step (%d skipped so far)", msg, self.skipped)
        return False

    def loss_ok(
        self,
        loss: torch.Tensor,
        terms: Mapping[str, torch.Tensor],
        step: int,
        batch: Any,
        batch_idx: int | None = None,
    ) -> bool:
        """True if ``loss`` is finite; otherwise stop or count a skip. ``terms``: the unweighted loss terms;
        ``batch_idx``: the loader's batch index (named in the message)."""
        if torch.isfinite(loss.detach()).all():
            return True
        bad = sorted(k for k, v in terms.items() if not torch.isfinite(v.detach()).all())
        return self._fail(
            f"non-finite loss at step {step} (terms {bad or ['total']}; batch"
            + (f" {batch_idx}," if batch_idx is not None else "")
            + f" {describe_batch(batch)}). Lower optim.lr or check the data; trainer.on_nonfinite=skip "
            "skips such steps"
        )

    def grads_ok(self, named_params: Iterable[tuple[str, torch.nn.Parameter]], step: int) -> bool:
        """True if every gradient is finite; otherwise stop or count a skip (the caller skips ``step()``)."""
        bad = [n for n, p in named_params if p.grad is not None and _nonfinite(p.grad)]
        if not bad:
            return True
        return self._fail(f"non-finite gradient at step {step} in {len(bad)} parameter(s), e.g. {bad[:5]}")


def describe_batch(batch: Any) -> str:
    """A short description of a batch for error messages: size and, when known, its datasets."""
    size = getattr(batch, "batch_size", None)
    names = getattr(batch, "dataset", None)
    if names:
        return f"size {size}, datasets {sorted(set(names))}"
    return f"size {size}"
