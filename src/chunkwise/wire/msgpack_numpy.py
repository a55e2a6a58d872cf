"""msgpack with numpy arrays, in the format openpi's clients and servers use on the wire.

An array is packed as a msgpack map with binary keys::

    {b"__ndarray__": True, b"data": <raw bytes, C order>, b"dtype": dtype.str, b"shape": [..]}

and a numpy scalar as ``{b"__npgeneric__": True, b"data": <python value>, b"dtype": dtype.str}``
(``dtype.str`` is numpy's byte-order-qualified code: ``"<f4"``, ``"|u1"``, ``"<U5"``).
Everything else is plain msgpack (``use_bin_type=True``: str as str, bytes as bin). The
bytes produced here are the bytes ``openpi_client.msgpack_numpy`` produces for the same
value (checked by a test that runs both). Written from the format, so chunkwise never
depends on openpi-client (whose numpy<2 pin breaks pyarrow).

Decoding is stricter than openpi's, because here the bytes come from the network: object,
void and complex dtypes are refused (openpi refuses to *pack* them; unpacking one would
otherwise hand numpy an arbitrary structured type), the data length must equal
``prod(shape) * itemsize``, shapes are at most ``MAX_DIMS`` non-negative ints, and a
malformed array map raises :class:`MsgpackNumpyError` instead of passing through.
Nothing is ever unpickled: msgpack has no code-carrying type, and no ext type is accepted.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

MAX_DIMS = 8
# numpy kinds accepted from the network: bool, ints, floats, fixed-width str / bytes.
_KINDS = frozenset("biufUS")


class MsgpackNumpyError(ValueError):
    """A payload that is not valid msgpack-numpy (the message says what and where)."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in _KINDS:
        raise MsgpackNumpyError(f"unsupported dtype {dtype.str!r} (object, void and complex arrays are refused)")


def _pack_default(obj: Any) -> Any:
    """msgpack's ``default`` hook: numpy arrays and scalars -> tagged maps."""
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot msgpack an object of type {type(obj).__name__}")


def _dtype(code: Any) -> np.dtype:
    if not isinstance(code, str) or not 1 <= len(code) <= 16:
        raise MsgpackNumpyError("array dtype must be a short string such as '<f4'")
    try:
        dtype = np.dtype(code)
    except (TypeError, ValueError):
        raise MsgpackNumpyError(f"unknown array dtype {code[:16]!r}") from None
    _check_dtype(dtype)
    return dtype


def _get(obj: dict, name: str) -> Any:
    for key in (name.encode(), name):  # openpi's decoder accepts str keys too
        if key in obj:
            return obj[key]
    raise MsgpackNumpyError(f"array map has no {name!r} field")


def _unpack_hook(obj: dict) -> Any:
    """msgpack's ``object_hook``: tagged maps -> numpy (every field checked)."""
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        dtype = _dtype(_get(obj, "dtype"))
        data = _get(obj, "data")
        shape = _get(obj, "shape")
        if not isinstance(data, bytes):
            raise MsgpackNumpyError(f"array data must be bytes, got {type(data).__name__}")
        if not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS:
            raise MsgpackNumpyError(f"array shape must be a list of at most {MAX_DIMS} ints")
        n = 1
        for s in shape:
            if type(s) is not int or s < 0:
                raise MsgpackNumpyError(f"array shape {list(shape)[:MAX_DIMS]} must hold non-negative ints")
            n *= s
        if n * dtype.itemsize != len(data):
            raise MsgpackNumpyError(
                f"array of shape {tuple(shape)} and dtype {dtype.str} needs {n * dtype.itemsize} bytes, got {len(data)}"
            )
        # A read-only view of the received bytes: no copy.
        return np.ndarray(buffer=data, dtype=dtype, shape=tuple(shape))
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        dtype = _dtype(_get(obj, "dtype"))
        value = _get(obj, "data")
        if not isinstance(value, (bool, int, float, str, bytes)):
            raise MsgpackNumpyError(f"numpy scalar data must be a plain value, got {type(value).__name__}")
        try:
            return dtype.type(value)
        except (TypeError, ValueError, OverflowError):
            raise MsgpackNumpyError(f"numpy scalar {str(value)[:32]!r} does not fit dtype {dtype.str}") from None
    return obj


def _refuse_ext(code: int, data: bytes) -> Any:
    raise MsgpackNumpyError(f"msgpack extension type {code} is not accepted")


def packb(obj: Any) -> bytes:
    """``obj`` (dicts, lists, str, numbers, numpy arrays and scalars) -> bytes."""
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


class Packer:
    """A reusable packer (as ``msgpack.Packer``); ``pack(obj) -> bytes``."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_pack_default, use_bin_type=True)

    def pack(self, obj: Any) -> bytes:
        return self._packer.pack(obj)


def unpackb(data: bytes, *, max_bytes: int | None = None) -> Any:
    """bytes -> value; arrays come back as read-only numpy views of ``data``. Raises
    :class:`MsgpackNumpyError` for anything that is not valid msgpack-numpy."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MsgpackNumpyError(f"expected bytes, got {type(data).__name__}")
    if max_bytes is not None and len(data) > max_bytes:
        raise MsgpackNumpyError(f"payload is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        return msgpack.unpackb(
            bytes(data), object_hook=_unpack_hook, ext_hook=_refuse_ext, raw=False, strict_map_key=True,
            use_list=True,
        )
    except MsgpackNumpyError:
        raise
    except msgpack.ExtraData:
        raise MsgpackNumpyError("payload holds more than one msgpack value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        # Malformed msgpack, a map key that is not str/bytes, invalid UTF-8, too deep ...
        raise MsgpackNumpyError(f"not valid msgpack: {type(e).__name__}: {str(e)[:120]}") from None
