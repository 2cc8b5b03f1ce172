"""Bad requests to the policy server and bad replies from its policy: malformed frames, hostile msgpack,
observations that break the contract, oversize messages, wrong credentials and origins, and policies that
return NaN / huge / empty / misshaped chunks or raise. The server must answer each with an error (a text
frame, a close with a reason, or an HTTP refusal), never send a bad chunk, and serve a fresh client after."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import wall_robots as wr

from . import Case, Outcome

TIMEOUT = 10.0


class EchoPolicy:
    """[3, 2] chunk = 0.1 * state; ``reply`` replaces the chunk (or the whole reply dict) when set."""

    def __init__(self) -> None:
        self.reply: Any = None

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if callable(self.reply):
            return self.reply()
        if self.reply is not None:
            return {"actions": self.reply}
        return {"actions": np.tile(0.1 * np.asarray(obs["observation.state"], np.float64), (3, 1))}

    def reset(self) -> None:
        pass

    def contract(self) -> wr.ObservationContract:
        return wr.ObservationContract(
            robot="arm",
            features={
                "observation.state": wr.FeatureSpec((2,), "float32", (-10, 10)),
                "observation.images.front": wr.FeatureSpec((8, 8, 3), "uint8"),
                "task": wr.FeatureSpec((), "str"),
            },
            action_horizon=3, action_dim=2, action_low=(-5.0, -5.0), action_high=(5.0, 5.0),
        )  # fmt: skip


def good() -> dict[str, Any]:
    return {"observation.state": np.array([1.0, -1.0], np.float32),
            "observation.images.front": np.zeros((8, 8, 3), np.uint8), "task": "pick"}  # fmt: skip


def _send(port: int, frame: bytes | str, **kw: Any) -> tuple[Outcome, str]:
    """One request on a fresh connection -> clear (error frame / close with reason / HTTP refusal) or
    silent (actions came back)."""
    try:
        with connect(f"ws://127.0.0.1:{port}", max_size=None, open_timeout=TIMEOUT, **kw) as ws:
            ws.recv(timeout=TIMEOUT)
            ws.send(frame)
            reply = ws.recv(timeout=TIMEOUT)
    except InvalidStatus as e:
        return "clear", f"HTTP {e.response.status_code}"
    except ConnectionClosed as e:
        reason = e.rcvd.reason if e.rcvd else ""
        code = e.rcvd.code if e.rcvd else None
        return (
            ("clear", f"closed {code}: {reason}")
            if code in (1008, 1009, 1011)
            else ("crash", f"closed {code}")
        )
    except TimeoutError:
        return "crash", "no answer (timeout)"
    if isinstance(reply, str):  # "Type: message": a clear error names what was wrong
        message = reply.partition(": ")[2].strip()
        return (
            ("clear", reply.splitlines()[0][:160])
            if message
            else ("crash", f"error frame without a reason: {reply!r}")
        )
    return "silent", f"answered {sorted(wr.unpackb(reply))}"


def _healthy(port: int) -> bool:
    try:
        with wr.PolicyClient("127.0.0.1", port, timeout=TIMEOUT) as c:
            return c.infer(good())["actions"].shape == (3, 2)
    except Exception:
        return False


def _array(data: bytes, dtype: str, shape: list[int]) -> dict[bytes, Any]:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def _raw(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


def _obs(**over: Any) -> bytes:
    o = {k: v for k, v in {**good(), **over}.items() if v is not None}
    return wr.packb(o)


REQUESTS: dict[str, Callable[[], bytes | str]] = {
    "text frame": lambda: "hello",
    "empty binary frame": lambda: b"",
    "random bytes": lambda: np.random.default_rng(0).bytes(300),
    "truncated msgpack": lambda: _obs()[:20],
    "msgpack list": lambda: _raw([1, 2, 3]),
    "msgpack int": lambda: _raw(7),
    "msgpack nil": lambda: _raw(None),
    "msgpack string": lambda: _raw("obs"),
    "deeply nested lists": lambda: b"\x91" * 5000 + b"\xc0",
    "ndarray short buffer": lambda: _raw({"observation.state": _array(b"\x00" * 3, "<f4", [2])}),
    "ndarray object dtype": lambda: _raw({"observation.state": _array(b"\x00" * 16, "|O", [2])}),
    "ndarray complex dtype": lambda: _raw({"observation.state": _array(b"\x00" * 16, "<c8", [2])}),
    "ndarray bogus dtype": lambda: _raw({"observation.state": _array(b"\x00" * 8, "nope", [2])}),
    "ndarray negative shape": lambda: _raw({"observation.state": _array(b"", "<f4", [-2])}),
    "ndarray huge shape": lambda: _raw({"observation.state": _array(b"\x00" * 8, "<f4", [2**40, 2**30])}),
    "too many keys": lambda: _raw({f"k{i}": i for i in range(1000)}),
    "prompt of 1 MB": lambda: _obs(task="x" * 2**20),
    "message over the size limit": lambda: _obs(pad=np.zeros(2**21, np.float32)),
    "state missing": lambda: _obs(**{"observation.state": None}),
    "image missing": lambda: _obs(**{"observation.images.front": None}),
    "task missing": lambda: _obs(task=None),
    "unknown key": lambda: _obs(extra=1.0),
    "unknown robot": lambda: _obs(dataset="other"),
    "state wrong shape": lambda: _obs(**{"observation.state": np.zeros(5, np.float32)}),
    "state int dtype": lambda: _obs(**{"observation.state": np.array([1, 2], np.int64)}),
    "state NaN": lambda: _obs(**{"observation.state": np.array([np.nan, 0], np.float32)}),
    "state inf": lambda: _obs(**{"observation.state": np.array([np.inf, 0], np.float32)}),
    "state out of range": lambda: _obs(**{"observation.state": np.array([100.0, 0], np.float32)}),
    "state a string": lambda: _obs(**{"observation.state": "1, 2"}),
    "image float": lambda: _obs(**{"observation.images.front": np.zeros((8, 8, 3), np.float32)}),
    "image wrong size": lambda: _obs(**{"observation.images.front": np.zeros((16, 8, 3), np.uint8)}),
    "task an int": lambda: _obs(task=3),
    "two names for one key": lambda: _obs(prompt="pick"),
}
REPLIES: dict[str, Any] = {
    "policy returns NaN": np.full((3, 2), np.nan),
    "policy returns inf": np.full((3, 2), np.inf),
    "policy returns 1e30": np.full((3, 2), 1e30),
    "policy returns out of bounds": np.full((3, 2), 7.0),
    "policy returns an empty chunk": np.zeros((0, 2)),
    "policy returns 1-D": np.zeros(2),
    "policy returns wrong dims": np.zeros((3, 5)),
    "policy returns wrong horizon": np.zeros((2, 2)),
    "policy returns strings": np.array([["a", "b"]] * 3),
    "policy returns no actions": lambda: {"chunk": np.zeros((3, 2))},
    "policy raises ValueError": lambda: (_ for _ in ()).throw(ValueError("bad observation")),
    "policy raises RuntimeError": lambda: (_ for _ in ()).throw(RuntimeError("CUDA error: out of memory")),
}


def _token_case(
    server: Callable[[str], wr.PolicyServer], headers: dict[str, str] | None
) -> tuple[Outcome, str]:
    return _send(server("s3cret").port, wr.packb(good()), additional_headers=headers)


def cases(work: Path) -> list[Case]:
    """Every server case against one running server (started lazily, kept for the whole family)."""
    policy, box = EchoPolicy(), {}

    def server(token: str | None = None) -> wr.PolicyServer:
        key = f"s{token}"
        if key not in box:
            box[key] = wr.PolicyServer(
                policy, token=token, max_message_bytes=2**20, max_prompt_chars=1000
            ).start()
            atexit.register(box[key].stop)
        return box[key]

    def request(make: Callable[[], bytes | str], **kw: Any) -> Callable[[], tuple[Outcome, str]]:
        def run() -> tuple[Outcome, str]:
            port = server().port
            out = _send(port, make(), **kw)
            return out if _healthy(port) else ("crash", f"server stopped answering after: {out[1]}")

        return run

    def reply(value: Any) -> Callable[[], tuple[Outcome, str]]:
        def run() -> tuple[Outcome, str]:
            policy.reply = value
            try:
                out = _send(server().port, wr.packb(good()))
            finally:
                policy.reply = None
            return out if _healthy(server().port) else ("crash", f"server stopped answering after: {out[1]}")

        return run

    out = [Case("server", n, request(m)) for n, m in REQUESTS.items()]
    out.append(Case("server", "evil origin", request(lambda: wr.packb(good()), origin="http://evil.example")))
    out += [Case("server", n, reply(v)) for n, v in REPLIES.items()]
    for name, headers in (("no token", None), ("wrong token", {"Authorization": "Api-Key nope"})):
        out.append(Case("server", name, partial(_token_case, server, headers)))  # fmt: skip
    return out
