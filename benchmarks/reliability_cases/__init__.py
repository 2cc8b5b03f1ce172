"""The reliability catalogue: bad inputs across datasets, checkpoints, policies, the server and robots, each
replayed and classified (see ``benchmarks/reliability.py``).

A :class:`Case` runs one bad input and returns an :data:`Outcome`:

* ``clear``: refused with an error raised by our own code (the innermost traceback frame is a ``raise``
  statement in a ``wall_*`` module) with a message, of a deliberate type (not ``IndexError``, ``AttributeError``, ...); or, for the
  server, an error frame / a close with a reason / an HTTP refusal, after which a fresh client is served; for
  robots, a refused (``UnsafeActionError``) or clipped-and-counted command;
* ``crash``: any other exception (a library's, a traceback from deep inside numpy/torch), a hang, a server
  that stops answering;
* ``silent``: the bad input was accepted and something came back as if it were fine;
* ``lost``: data that was written and finished is gone (writer kill tests);
* ``harmless``: bytes were damaged where nothing is read from (a parquet footer's statistics) and every value
  reads back exactly: neither an error nor a wrong result.
"""

from __future__ import annotations

import linecache
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["clear", "harmless", "crash", "silent", "lost"]
OURS = ("wall_core", "wall_data", "wall_robots", "wall_flow", "wall_tokenizer")
ACCIDENTAL = (IndexError, AttributeError, NameError, ZeroDivisionError, UnboundLocalError, RecursionError,
              AssertionError, StopIteration, NotImplementedError, MemoryError)  # fmt: skip


@dataclass
class Case:
    """One bad input: ``family`` (dataset, checkpoint, policy, server, robot), a unique ``name`` and ``run``
    (performs it, returns ``(outcome, detail)``)."""

    family: str
    name: str
    run: Callable[[], tuple[Outcome, str]]


def raised_by_us(e: BaseException) -> bool:
    """True when ``e`` was raised by a ``raise`` statement of one of our packages: the innermost traceback
    frame is ours and its line is a ``raise`` (an error numpy or torch raised inside our code is not)."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    if not str(tb.tb_frame.f_globals.get("__name__", "")).startswith(OURS):
        return False
    return linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip().startswith("raise")


def classify(e: BaseException) -> tuple[Outcome, str]:
    """``clear`` for a deliberate error of ours with a message, else ``crash`` (with the traceback's tail)."""
    msg = str(e).strip()
    if raised_by_us(e) and msg and not isinstance(e, ACCIDENTAL):
        return "clear", f"{type(e).__name__}: {msg.splitlines()[0][:160]}"
    tail = "".join(traceback.format_exception(e)[-3:]).strip().replace("\n", " | ")
    return "crash", tail[-300:]


def expect_error(fn: Callable[[], Any]) -> tuple[Outcome, str]:
    """Run ``fn``; a bad input must make it raise. Returning normally is ``silent``."""
    try:
        result = fn()
    except Exception as e:
        return classify(e)
    return "silent", f"accepted; returned {type(result).__name__}"


def worst(*outcomes: tuple[Outcome, str]) -> tuple[Outcome, str]:
    """The worst of several outcomes of one case (lost > crash > silent > clear)."""
    rank = {"clear": 0, "harmless": 0, "silent": 1, "crash": 2, "lost": 3}
    return max(outcomes, key=lambda o: rank[o[0]])


def flips(size: int, n: int) -> list[int]:
    """``n`` byte offsets spread over a file of ``size`` bytes (start, middle, end regions)."""
    return sorted({min(size - 1, max(0, int(size * (i + 0.5) / n))) for i in range(n)})


def flip_byte(path: Any, offset: int, mask: int = 0x01) -> None:
    """XOR one byte of the file at ``path``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
