"""Training progress as log lines (step, rate, ETA, current losses), readable where there is no terminal.

Lightning's progress bar redraws one terminal line; piped into a file or a CI log it shows nothing useful
until the end. :class:`ProgressLog` writes one ``logging`` line at least every ``every_s`` seconds (and
optionally every ``every_n_steps`` steps), plus one at the start and one at the end of training.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import lightning as L

__all__ = ["ProgressLog", "format_duration"]
logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``3725.0`` -> ``'1h02m05s'``, ``65.2`` -> ``'1m05s'``, ``4.2`` -> ``'4s'``; ``nan``/inf -> ``'?'``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


class ProgressLog(L.Callback):
    """Log ``step N/T (p%) | r steps/s | elapsed | ETA | loss ... <term> ...`` during ``fit``.

    Args:
        every_s: longest gap between two lines, in seconds of ``clock`` (default 30).
        every_n_steps: also log every this many optimizer steps (``None``: time only).
        prefix: metric-name prefix to show (``"train/"``: the module logs ``train/loss``, ``train/flow``...);
            the prefix is stripped in the line.
        when: ``"always"``, or ``"no-tty"`` to stay quiet while a Lightning progress bar draws on a
            terminal (``stream.isatty()``) — the bar already shows the same thing there.
        clock: seconds as a float (``time.monotonic``; tests pass a fake clock).
        stream: the stream whose ``isatty()`` decides ``when="no-tty"`` (default ``sys.stderr``).

    Values come from ``trainer.callback_metrics`` (what ``LightningModule.log`` recorded last), so a line
    shows the most recent step's losses, not a running mean. The total is ``trainer.max_steps`` (or
    ``trainer.estimated_stepping_batches`` when only epochs bound training).
    """

    def __init__(
        self,
        every_s: float = 30.0,
        every_n_steps: int | None = None,
        prefix: str = "train/",
        when: str = "always",
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
    ) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0 seconds, got {every_s}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        if when not in ("always", "no-tty"):
            raise ValueError(f"when must be 'always' or 'no-tty', got {when!r}")
        self.every_s, self.every_n_steps, self.prefix, self.when = every_s, every_n_steps, prefix, when
        self.clock, self.stream = clock, stream
        self.lines: int = 0
        self._active = True
        self._t0 = self._last = 0.0
        self._step0 = self._last_step = -1

    def _total(self, trainer: L.Trainer) -> int | None:
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        est = trainer.estimated_stepping_batches
        return int(est) if math.isfinite(est) else None

    def line(self, trainer: L.Trainer, now: float) -> str:
        """The progress line for the trainer's current state at clock time ``now`` (seconds)."""
        step, total = int(trainer.global_step), self._total(trainer)
        elapsed = now - self._t0
        done = step - self._step0
        rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
        eta = (total - step) / rate if total is not None and math.isfinite(rate) else float("nan")
        head = f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"
        parts = [head, f"{rate:.2f} steps/s", f"elapsed {format_duration(elapsed)}"]
        parts.append(f"ETA {format_duration(eta)}")
        metrics = self._metrics(trainer)
        if metrics:
            parts.append(" ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        return " | ".join(parts)

    def _metrics(self, trainer: L.Trainer) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in trainer.callback_metrics.items():
            if not key.startswith(self.prefix):
                continue
            try:
                out[key[len(self.prefix) :]] = float(value)
            except (TypeError, ValueError):
                continue
        if "loss" in out:  # the total first, then the terms
            out = {"loss": out.pop("loss"), **out}
        return out

    def _emit(self, trainer: L.Trainer, now: float) -> None:
        logger.info("%s", self.line(trainer, now))
        self.lines += 1
        self._last, self._last_step = now, int(trainer.global_step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock; decide whether to log at all (``when="no-tty"`` and a bar on a terminal)."""
        stream = self.stream if self.stream is not None else sys.stderr
        has_bar = trainer.progress_bar_callback is not None
        self._active = self.when == "always" or not (has_bar and stream.isatty())
        self._t0 = self._last = self.clock()
        self._step0 = int(trainer.global_step)
        if self._active:
            total = self._total(trainer)
            logger.info("training from step %d to %s", self._step0, total if total else "the last epoch")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log when ``every_s`` seconds passed since the last line or the step hits ``every_n_steps``."""
        if not self._active:
            return
        now, step = self.clock(), int(trainer.global_step)
        by_steps = self.every_n_steps is not None and step > 0 and step % self.every_n_steps == 0
        if by_steps or now - self._last >= self.every_s:
            self._emit(trainer, now)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One closing line with the final step, total time and last losses (unless just logged)."""
        if self._active and self._last_step != int(trainer.global_step):
            self._emit(trainer, self.clock())
