"""Websocket policy server and client speaking openpi's wire protocol.

Protocol (openpi ``websocket_policy_server`` / ``openpi_client``): after the upgrade the server sends one
binary msgpack frame with the metadata dict; then each binary request ``packb(obs)`` gets a binary reply
``packb({"actions": [H, A], "server_timing": {...}})``. On an error the server sends the error as a *text*
frame and closes that connection with code 1011; other connections keep being served. Arrays travel as maps
``{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": [...]}``; object/void/complex dtypes are
refused and nothing is ever unpickled. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
from http import HTTPStatus
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.server import serve
from websockets.sync.client import connect

from .robot import Policy

__all__ = ["PolicyClient", "PolicyServer", "packb", "unpackb"]
logger = logging.getLogger(__name__)
_BAD_KINDS = {"O", "V", "c"}


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _BAD_KINDS:
            raise ValueError(
                f"unsupported array dtype {obj.dtype} (object/void/complex cannot cross the wire)"
            )
        return {
            b"__ndarray__": True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _BAD_KINDS:
            raise ValueError(f"refusing array of dtype {dtype}")
        shape = tuple(int(s) for s in obj[b"shape"])
        data = obj[b"data"]
        if len(data) != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(
                f"array payload has {len(data)} bytes, shape {shape} of {dtype} needs more or less"
            )
        return np.ndarray(buffer=data, dtype=dtype, shape=shape)
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_object_hook, raw=False)


class PolicyServer:
    """Serve a :class:`Policy` on ``ws://host:port`` (loopback by default) in a background thread.

    Requests are validated (binary frame, a msgpack map, size <= ``max_message_bytes``); inference runs in a
    worker thread under a lock so the event loop keeps answering health checks and other clients.
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 0,
        metadata: dict | None = None,
        max_message_bytes: int = 32 * 2**20,
    ) -> None:
        self.policy, self.host, self.port = policy, host, port
        self.metadata = metadata or {}
        self.max_message_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self.served = 0
        self.errors = 0

    async def _health(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        return None

    def _infer(self, obs: dict) -> dict:
        with self._lock:
            t = time.perf_counter()
            out = dict(self.policy.infer(obs))
            out["server_timing"] = {"infer_ms": (time.perf_counter() - t) * 1e3}
            return out

    async def _handler(self, ws: Any) -> None:
        await ws.send(packb(self.metadata))
        async for message in ws:
            try:
                if isinstance(message, str):
                    raise ValueError("expected a binary msgpack frame, got a text frame")
                obs = unpackb(message)
                if not isinstance(obs, dict):
                    raise ValueError(f"expected a msgpack map of observations, got {type(obs).__name__}")
                result = await asyncio.to_thread(self._infer, obs)
                await ws.send(packb(result))
                self.served += 1
            except Exception as e:  # report to this client, close it, keep serving others
                self.errors += 1
                logger.warning("policy server: rejecting request: %s", e)
                await ws.send(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
                await ws.close(1011, "Internal server error. Traceback included in previous frame.")
                return

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        async with serve(
            self._handler,
            self.host,
            self.port,
            max_size=self.max_message_bytes,
            compression=None,
            process_request=self._health,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def start(self) -> PolicyServer:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())

        self._thread = threading.Thread(target=run, daemon=True, name="wall-policy-server")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"policy server did not start on {self.host}:{self.port}")
        logger.info("serving policy on ws://%s:%d", self.host, self.port)
        return self

    def serve_forever(self) -> None:
        self.start()
        assert self._thread is not None
        self._thread.join()

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PolicyClient:
    """Synchronous client (same wire format as ``openpi_client.WebsocketClientPolicy``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, timeout: float = 30.0) -> None:
        uri = host if host.startswith("ws") else f"ws://{host}:{port}"
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect(uri, max_size=None, compression=None, open_timeout=timeout)
        )
        first = self._ws.recv(timeout=timeout)
        if isinstance(first, str):  # the server sends its metadata as msgpack bytes, errors as text
            raise RuntimeError(f"policy server at {uri} sent text instead of its metadata:\n{first}")
        self.metadata = unpackb(first)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self._ws.send(packb(obs))
        reply = self._ws.recv()
        if isinstance(reply, str):
            raise RuntimeError(f"Error in inference server:\n{reply}")
        return unpackb(reply)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
