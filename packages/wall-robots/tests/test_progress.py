"""Long jobs report progress as log lines when their output is not a terminal, as a tqdm bar when it is."""

import io
import logging

from wall_robots.progress import LogProgress, progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_logs_first_last_and_due_counts(caplog, monkeypatch):
    log = logging.getLogger("test.progress")
    bar = progress(5, "expert demos", "ep", log, stream=io.StringIO())
    assert isinstance(bar, LogProgress)
    clock = iter([0.0, 1.0, 2.0, 40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0])
    monkeypatch.setattr("wall_robots.progress.time.monotonic", lambda: next(clock))
    bar.start, bar.last = 0.0, -float("inf")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for _ in range(5):
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("expert demos: 1/5 ep")
    assert lines[-1].startswith("expert demos: 5/5 ep")
    assert 2 <= len(lines) < 5  # not every item: only the first, the ones due after every_s, and the last


def test_closing_early_logs_how_far_it_got(caplog):
    log = logging.getLogger("test.progress")
    bar = LogProgress(10, "evaluating", "ep", log, every_s=1e9)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        bar.update(3)
        bar.close()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "evaluating: 3/10 ep",
        "evaluating: 3/10 ep",
    ]


def test_a_terminal_gets_a_tqdm_bar():
    stream = _Tty()
    bar = progress(2, "evaluating", "ep", logging.getLogger("test.progress"), stream=stream)
    bar.update(2)
    bar.close()
    assert not isinstance(bar, LogProgress) and "2/2" in stream.getvalue()
