"""openpi's msgpack-numpy wire format: arrays travel as maps
``{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": [...]}``; object/void/complex dtypes are
refused and nothing is ever unpickled. :func:`unpackb` takes msgpack's own size limits (keys per map, string
length) so a hostile frame is refused while it is parsed."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import numpy as np

__all__ = ["packb", "unpackb"]


def _msgpack() -> Any:
    try:
        return import_module("msgpack")
    except ImportError as e:
        raise ImportError("msgpack is not installed: pip install 'wall-robots[server]'") from e


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
    """Serialise ``obj`` (dicts, lists, str, numbers, numpy arrays and scalars) to msgpack bytes."""
    return bytes(_msgpack().packb(obj, default=_default, use_bin_type=True))


def unpackb(data: bytes, max_keys: int | None = None, max_str_len: int | None = None) -> Any:
    """Inverse of :func:`packb`. ``max_keys`` bounds the entries of every map and ``max_str_len`` the bytes
    of every string while parsing (msgpack raises ``ValueError`` beyond them); None = no limit."""
    limits: dict[str, int] = {}
    if max_keys is not None:
        limits["max_map_len"] = max_keys
    if max_str_len is not None:
        limits["max_str_len"] = max_str_len
    return _msgpack().unpackb(data, object_hook=_object_hook, raw=False, **limits)
