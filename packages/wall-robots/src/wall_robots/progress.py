"""Progress of long jobs (expert demos, closed-loop evaluation): a tqdm bar on a terminal, and log lines
(``logging``, INFO) when the output is not a terminal, so a job run under nohup, CI or a scheduler still says
how far it is and how long it has taken."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm

__all__ = ["LogProgress", "progress"]


class LogProgress:
    """A counter with tqdm's ``update``/``close`` that logs ``desc: n/total unit (elapsed, eta)`` at most every
    ``every_s`` seconds, at the first and last item, and when closed."""

    def __init__(
        self, total: int, desc: str, unit: str, logger: logging.Logger, every_s: float = 30.0
    ) -> None:
        self.total, self.desc, self.unit, self.logger, self.every_s = total, desc, unit, logger, every_s
        self.n, self.start = 0, time.monotonic()
        self.last = -float("inf")

    def _log(self) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
        self.logger.info("%s: %d/%d %s (%.0f s elapsed, ~%.0f s left)", self.desc, self.n, self.total,
                         self.unit, elapsed, eta)  # fmt: skip
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; log when due."""
        self.n += n
        if self.n == 1 or self.n >= self.total or time.monotonic() - self.last >= self.every_s:
            self._log()

    def close(self) -> None:
        """Log the final count unless the last update just did."""
        if self.n < self.total:
            self._log()


def progress(total: int, desc: str, unit: str, logger: logging.Logger, stream: Any = None) -> Any:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a :class:`LogProgress` on ``logger``."""
    stream = sys.stderr if stream is None else stream
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return LogProgress(total, desc, unit, logger)
