"""`wall serve --allow-public --token`: flags parse and reach the server's bind check."""

import pytest

from wall_core.cli import build_parser


def test_serve_flags_parse_with_safe_defaults() -> None:
    p = build_parser()
    a = p.parse_args(["serve", "--policy", "runs/x"])
    assert a.allow_public is False and a.token is None and a.host == "127.0.0.1"
    a = p.parse_args(["serve", "--policy", "runs/x", "--host", "0.0.0.0", "--allow-public", "--token", "s3"])
    assert a.allow_public is True and a.token == "s3" and a.host == "0.0.0.0"


def test_public_bind_without_flag_is_refused() -> None:
    from wall_robots.serving import _check_bind

    with pytest.raises(Exception, match="allow_public=True"):
        _check_bind("0.0.0.0", 8000, False, None)
    _check_bind("0.0.0.0", 8000, True, "s3")  # allowed with the flag (warned)
