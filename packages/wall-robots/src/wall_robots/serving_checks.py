"""Argument and message checks of :class:`~wall_robots.serving.PolicyServer` (no websockets needed).

Bind address / port / token checks (loopback only unless ``allow_public``), positive-integer limits, and the
one-line error text sent to a refused client (no traceback, absolute paths reduced to file names).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

__all__ = ["check_bind", "check_limits", "error_text"]
logger = logging.getLogger("wall_robots.serving")  # the server's own log channel, as before the split
_ABS_PATH = re.compile(r"(?<![\w./:~-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"]+[/\\])+([^\s/\\'\"]+)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_text(e: BaseException, limit: int = 2000) -> str:
    """``Type: message`` on one line, absolute paths reduced to file names, at most ``limit`` characters."""
    text = _ABS_PATH.sub(r"\1", f"{type(e).__name__}: {e}").replace("\n", " ")
    return text[:limit]


def check_bind(host: str, port: Any, allow_public: bool, token: str | None) -> None:
    """Raise ``ValueError`` for a bad ``port`` (not 0..65535), an empty ``token``, or a non-loopback ``host``
    without ``allow_public``; warn when binding a public address (louder without a token)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535 (0 = any free port), got {port!r}")
    if token is not None and not token:
        raise ValueError("token must be a non-empty string (or None for no authentication)")
    if not _is_loopback(host):
        if not allow_public:
            raise ValueError(
                f"refusing to bind {host!r}: it is not a loopback address, so anyone on the network could "
                "drive the robot. Pass allow_public=True (and a token) to serve beyond this machine"
            )
        logger.warning(
            "policy server binds the PUBLIC address %s%s", host, "" if token else " WITHOUT a token"
        )


def check_limits(**limits: Any) -> None:
    """Raise ``ValueError`` naming the first of ``limits`` (name=value) that is not a positive integer."""
    for name, val in limits.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
