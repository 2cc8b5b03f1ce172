"""Websocket policy server and client speaking openpi's wire protocol.

Protocol (openpi ``websocket_policy_server`` / ``openpi_client``): after the upgrade the server sends one
binary msgpack frame with the metadata dict; then each binary request ``packb(obs)`` gets a binary reply
``packb({"actions": [H, A], "server_timing": {...}})``. On an error the server sends a one-line text frame
(``Type: message``, no traceback, no absolute paths) and closes that connection with code 1011; other
connections keep being served. ``GET /healthz`` answers 200. Codec: :mod:`wall_robots.wire`.

Hardening: loopback only unless ``allow_public=True`` (warned); optional token (the client sends
``Authorization: Api-Key <token>``, as ``openpi_client`` does with ``api_key``, or ``Bearer <token>``);
browser ``Origin`` headers accepted from loopback pages only; limits on message size, prompt length, keys,
connections and idle time; websockets' keepalive pings drop dead peers. When the policy declares an
:class:`~wall_robots.ObservationContract`, it is published under ``observation_contract`` and every
observation is checked against it; every reply's actions pass an :class:`~wall_robots.ActionGuard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import threading
import time
import traceback
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import connect
from websockets.typing import Origin

from .contract import ObservationContract, contracts_of, map_keys, select_contract
from .guard import ActionGuard
from .robot import Policy
from .serving_checks import check_bind as _check_bind
from .serving_checks import check_limits as _check_limits
from .serving_checks import error_text
from .wire import packb, unpackb

__all__ = ["PolicyClient", "PolicyServer", "RequestError", "packb", "unpackb"]
logger = logging.getLogger(__name__)
LOOPBACK_ORIGINS = (None, re.compile(r"(https?|wss?)://(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?"))


class RequestError(ValueError):
    """A request broke the server's protocol or limits (wrong frame type, too many keys, long prompt)."""


def _origins(
    origins: Sequence[str | re.Pattern[str] | None] | str | None,
) -> list[Origin | re.Pattern[str] | None] | None:
    if origins == "*":
        logger.warning("policy server accepts websocket handshakes from any web page (origins='*')")
        return None
    chosen = LOOPBACK_ORIGINS if origins is None else [origins] if isinstance(origins, str) else origins
    return [o if o is None or isinstance(o, re.Pattern) else Origin(o) for o in chosen]


class PolicyServer:
    """Serve a :class:`Policy` on ``ws://host:port`` (loopback by default) in a background thread.

    ``metadata``: sent first to every client, extended with the policy's contract (``contract`` overrides
    ``policy.contract()``). Limits: ``max_message_bytes`` (close 1009 beyond it), ``max_prompt_chars`` (any
    string value), ``max_keys`` (entries of any map), ``max_connections`` (HTTP 503 / close 1013 beyond),
    ``idle_timeout_s`` (close 1000 after that long without a request; None = never), keepalive
    ``ping_interval_s``/``ping_timeout_s``. ``origins``: accepted ``Origin`` headers (default: none or a
    loopback page; ``"*"`` accepts any, logged). ``check_actions=False`` sends replies unchecked (logged).
    ``key_map`` (sender name -> contract name) and the built-in openpi names (``builtin_key_map``, see
    :func:`wall_robots.contract.map_keys`) rename keys before an observation is checked against the contract.
    Inference runs in a worker thread under a lock so the event loop keeps answering other clients.
    Counters: ``served``, ``errors`` (refused requests), ``refused_chunks``.
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 0,
        metadata: dict | None = None,
        max_message_bytes: int = 32 * 2**20,
        *,
        allow_public: bool = False,
        token: str | None = None,
        origins: Sequence[str | re.Pattern[str] | None] | str | None = None,
        max_prompt_chars: int = 4096,
        max_keys: int = 256,
        max_connections: int = 16,
        idle_timeout_s: float | None = 300.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        contract: Any = None,
        check_actions: bool = True,
        key_map: dict[str, str] | None = None,
        builtin_key_map: bool = True,
    ) -> None:
        _check_bind(host, port, allow_public, token)
        _check_limits(
            max_prompt_chars=max_prompt_chars,
            max_keys=max_keys,
            max_connections=max_connections,
            max_message_bytes=max_message_bytes,
        )
        self.policy, self.host, self.port, self.token = policy, host, port, token
        self.max_message_bytes, self.max_prompt_chars, self.max_keys = (
            max_message_bytes,
            max_prompt_chars,
            max_keys,
        )
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self.ping = (ping_interval_s, ping_timeout_s)
        self.origins = _origins(origins)
        self.contracts = contracts_of(contract if contract is not None else policy)
        self.key_map, self.builtin_key_map = dict(key_map or {}), builtin_key_map
        self.metadata = self._metadata(metadata, self.contracts)
        self.guards: dict[str, ActionGuard] | None = None
        if check_actions:
            self.guards = {r: ActionGuard.from_contract(c) for r, c in (self.contracts or {}).items()}
            self.guards[""] = ActionGuard()
        else:
            logger.warning(
                "policy server: action checks disabled (check_actions=False); replies go unchecked"
            )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop: asyncio.Future | None = None
        self._active = 0
        self.served = self.errors = self.refused_chunks = 0

    @staticmethod
    def _metadata(metadata: dict | None, contracts: dict[str, ObservationContract] | None) -> dict:
        meta = dict(metadata or {})
        if contracts:
            meta["observation_contract"] = {r: c.to_dict() for r, c in contracts.items()}
            meta.setdefault("robots", sorted(contracts))
            if len(contracts) == 1:
                c = next(iter(contracts.values()))
                meta.setdefault("action_horizon", c.action_horizon)
                meta.setdefault("action_dim", c.action_dim)
        return meta

    def _authorised(self, request: Any) -> bool:
        if self.token is None:
            return True
        got = request.headers.get("Authorization", "")
        return any(hmac.compare_digest(got, f"{scheme} {self.token}") for scheme in ("Api-Key", "Bearer"))

    async def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        if not self._authorised(request):
            logger.info("policy server: refused %s: missing or wrong token", connection.remote_address)
            return connection.respond(
                HTTPStatus.UNAUTHORIZED, "a valid 'Authorization: Api-Key <token>' is required\n"
            )
        if self._active >= self.max_connections:
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, f"server busy ({self.max_connections} clients)\n"
            )
        return None

    def _decode(self, message: str | bytes) -> dict:
        if isinstance(message, str):
            raise RequestError("expected a binary msgpack frame, got a text frame")
        try:
            obs = unpackb(message, max_keys=self.max_keys, max_str_len=4 * self.max_prompt_chars + 64)
        except Exception as e:  # msgpack's ValueError / ExtraData / StackError, numpy's dtype TypeError
            if "exceeds max_" in str(e):
                raise RequestError(f"request exceeds the server's limits ({e}); max_keys={self.max_keys}, "
                                   f"max_prompt_chars={self.max_prompt_chars}") from None  # fmt: skip
            raise RequestError(f"the request is not a valid observation frame ({type(e).__name__}: {e}); "
                               "send wall_robots.packb(observation dict)") from None  # fmt: skip
        if not isinstance(obs, dict):
            raise RequestError(f"expected a msgpack map of observations, got {type(obs).__name__}")
        for key, value in obs.items():
            if isinstance(value, str) and len(value) > self.max_prompt_chars:
                raise RequestError(
                    f"{key!r} has {len(value)} characters; the limit is max_prompt_chars={self.max_prompt_chars}"
                )
        return obs

    def _infer(self, obs: dict) -> dict:
        robot = ""
        if self.contracts:
            contract = select_contract(self.contracts, obs)
            obs = map_keys(obs, contract, self.key_map, self.builtin_key_map)
            contract.validate(obs)
            robot = contract.robot
        with self._lock:
            t = time.perf_counter()
            out = dict(self.policy.infer(obs))
            elapsed = (time.perf_counter() - t) * 1e3
            if self.guards is not None:
                if "actions" not in out:
                    raise ValueError("the policy's reply has no 'actions'")
                guard = self.guards.get(robot, self.guards[""])
                refused = guard.refused
                try:
                    guard.check(out["actions"])
                finally:
                    self.refused_chunks += guard.refused - refused
        out["server_timing"] = {"infer_ms": elapsed}
        return out

    async def _answer(self, ws: Any, message: str | bytes) -> bool:
        try:
            result = await asyncio.to_thread(self._infer, self._decode(message))
            await ws.send(packb(result))
            self.served += 1
            return True
        except ConnectionClosed:
            raise
        except Exception as e:  # report to this client, close it, keep serving others
            self.errors += 1
            text = error_text(e)
            logger.warning("policy server: refused a request from %s: %s", ws.remote_address, text)
            logger.debug("policy server: %s", traceback.format_exc())
            await ws.send(text)
            await ws.close(1011, "request refused; the reason is in the previous frame")
            return False

    async def _handler(self, ws: Any) -> None:
        peer = ws.remote_address
        if self._active >= self.max_connections:
            await ws.close(1013, f"server busy ({self.max_connections} clients)")
            return
        self._active += 1
        try:
            await ws.send(packb(self.metadata))
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.idle_timeout_s)
                except TimeoutError:
                    logger.info("policy server: closing %s, idle for %.0f s", peer, self.idle_timeout_s)
                    await ws.close(1000, f"idle for {self.idle_timeout_s:g} s")
                    return
                if not await self._answer(ws, message):
                    return
        except ConnectionClosedOK:
            logger.debug("policy server: %s disconnected", peer)
        except ConnectionClosed as e:
            if e.sent is not None and e.sent.code == 1009:
                logger.warning(
                    "policy server: %s sent a message over %d bytes; closed (1009)",
                    peer,
                    self.max_message_bytes,
                )
            else:
                logger.info("policy server: client %s left without a close frame", peer)
        finally:
            self._active -= 1

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        async with serve(
            self._handler,
            self.host,
            self.port,
            max_size=self.max_message_bytes,
            compression=None,
            origins=self.origins,
            process_request=self._process_request,
            ping_interval=self.ping[0],
            ping_timeout=self.ping[1],
            close_timeout=5,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def start(self) -> PolicyServer:
        """Start serving in a daemon thread; returns self once listening (``port`` is then the real port).

        Raises ``RuntimeError`` naming the address when it cannot listen (port in use, no such address).
        """

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._main())
            except BaseException as e:  # reported by start() in the caller's thread
                self._start_error = e
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, daemon=True, name="wall-policy-server")
        self._thread.start()
        if not self._ready.wait(10) or self._start_error is not None:
            e = self._start_error
            raise RuntimeError(f"policy server could not listen on {self.host}:{self.port}: {e}") from e
        logger.info("serving policy on ws://%s:%d", self.host, self.port)
        return self

    def serve_forever(self) -> None:
        """Start and block until :meth:`stop` is called from another thread."""
        self.start()
        assert self._thread is not None
        self._thread.join()

    def _finish(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def stop(self) -> None:
        """Stop serving and join the thread (5 s at most)."""
        if self._loop and self._stop and not self._stop.done():
            self._loop.call_soon_threadsafe(self._finish)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PolicyClient:
    """Synchronous client (same wire format as ``openpi_client.WebsocketClientPolicy``).

    ``api_key``: sent as ``Authorization: Api-Key <key>`` (the server's ``token``). ``metadata``: the
    server's first frame. :meth:`infer` takes an observation dict and returns ``{"actions": [H, A], ...}``;
    an error frame raises ``RuntimeError`` with the server's one-line reason.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8000, timeout: float = 30.0, api_key: str | None = None
    ) -> None:
        uri = host if host.startswith("ws") else f"ws://{host}:{port}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect(uri, max_size=None, compression=None, open_timeout=timeout, additional_headers=headers)
        )
        first = self._ws.recv(timeout=timeout)
        if isinstance(first, str):  # the server sends its metadata as msgpack bytes, errors as text
            raise RuntimeError(f"policy server at {uri} sent text instead of its metadata:\n{first}")
        self.metadata = unpackb(first)

    @staticmethod
    def _decode(reply: str | bytes) -> Any:
        if isinstance(reply, str):
            raise RuntimeError(f"Error in inference server:\n{reply}")
        return unpackb(reply)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send ``obs`` and wait for the reply dict (``actions`` [H, A], ``server_timing``)."""
        self._ws.send(packb(obs))
        return self._decode(self._ws.recv())

    def reset(self) -> None:
        """Nothing to reset on the client side (openpi's interface)."""

    def close(self) -> None:
        """Close the connection (sends a close frame)."""
        self._stack.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
