"""numpy <-> wire tensors, observations, metadata. No pickle: bytes -> ``np.frombuffer``.

A tensor is ``(dtype, shape, data)`` with ``dtype`` from :data:`ALLOWED_DTYPES` and
``len(data) == prod(shape) * itemsize`` (little endian, C order). Anything else raises
:class:`WireError`, which the server turns into ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from chunkwise.types import TASK, FeatureSpec, PolicyMetadata, Prefix
from chunkwise.wire import chunkwise_pb2 as pb

PROTOCOL_VERSION = 2

# Allow-list: fixed-size numeric dtypes only (no object, void, string or complex dtypes,
# which is what keeps decoding free of any code execution or surprises).
ALLOWED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool")
}
# dtype -> wire name by hash lookup (``ndarray.dtype.name`` costs ~40 us per call).
_NAMES: dict[np.dtype, str] = {dt: name for name, dt in ALLOWED_DTYPES.items()}
_F32 = ALLOWED_DTYPES["float32"]
MAX_TENSOR_DIMS = 8


class WireError(ValueError):
    """A message is malformed (unknown dtype, size mismatch, bad shape, non-finite values)."""


def clip(value: object, limit: int = 48) -> str:
    """``repr`` of client-supplied text for an error message, at most ``limit`` characters
    of it (error details never echo unbounded client input)."""
    s = str(value)
    if len(s) <= limit:
        return repr(s)
    return f"{s[:limit]!r}... ({len(s)} characters)"


def encode_tensor(array: Any, out: pb.Tensor | None = None) -> pb.Tensor:
    """Fill ``out`` (e.g. a map entry of a request, avoiding a second copy) or a new Tensor."""
    arr = array if type(array) is np.ndarray else np.asarray(array)
    name = _NAMES.get(arr.dtype)  # hits only for the exact little-endian allowed dtypes
    if name is None:
        if arr.dtype.kind in "biuf":  # e.g. big endian: sent as little endian
            name = _NAMES.get(arr.dtype.newbyteorder("<"))
        if name is None:
            raise WireError(f"dtype {arr.dtype} cannot be sent; allowed: {sorted(ALLOWED_DTYPES)}")
        arr = np.ascontiguousarray(arr, dtype=ALLOWED_DTYPES[name])
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    t = pb.Tensor() if out is None else out
    t.dtype = name
    if out is None or not len(t.shape):
        t.shape.extend(arr.shape)
    else:
        t.shape[:] = arr.shape
    t.data = arr.tobytes()
    return t


def decode_tensor(t: pb.Tensor, *, name: str = "tensor", max_bytes: int | None = None) -> np.ndarray:
    """Checked decode; the result is a read-only view on the message bytes."""
    dtype = ALLOWED_DTYPES.get(t.dtype)
    if dtype is None:
        raise WireError(f"{name}: unknown dtype {clip(t.dtype, 24)}; allowed: {sorted(ALLOWED_DTYPES)}")
    if len(t.shape) > MAX_TENSOR_DIMS:
        raise WireError(f"{name}: {len(t.shape)} dimensions, at most {MAX_TENSOR_DIMS} allowed")
    shape = tuple(t.shape)
    if shape and min(shape) < 0:
        raise WireError(f"{name}: negative dimension in shape {shape}")
    expected = math.prod(shape) * dtype.itemsize
    if max_bytes is not None and expected > max_bytes:
        raise WireError(f"{name}: {expected} bytes exceeds the limit of {max_bytes}")
    data = t.data
    if len(data) != expected:
        raise WireError(
            f"{name}: {len(data)} data bytes do not match dtype {t.dtype} shape {shape} "
            f"(expected {expected})"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise WireError(f"{name} contains NaN or inf")


# ---------------------------------------------------------------- observation requests


def encode_request(
    obs: Mapping[str, Any],
    *,
    session_id: str,
    episode_id: int,
    timestep: int,
    action_context: np.ndarray | None = None,
    estimated_delay: int = 0,
    request_id: int = 0,
    must_go: bool = False,
    prefix_mode: str = "",
) -> pb.ObservationRequest:
    # Field by field: cheaper than the keyword constructor (this runs once per request).
    req = pb.ObservationRequest()
    req.session_id = session_id
    req.episode_id = int(episode_id)
    req.timestep = int(timestep)
    req.task = str(obs.get(TASK, ""))
    if estimated_delay:
        req.estimated_delay = int(estimated_delay)
    if request_id:
        req.request_id = int(request_id)
    if must_go:
        req.must_go = True
    if prefix_mode:
        req.prefix_mode = prefix_mode
    tensors = req.observation
    for key, value in obs.items():
        if key != TASK:
            encode_tensor(value, out=tensors[key])
    if action_context is not None:
        encode_tensor(np.asarray(action_context, dtype=np.float32), out=req.action_context)
    return req


def decode_observation(req: pb.ObservationRequest, *, finite: bool = True) -> dict[str, Any]:
    """Observation dict (arrays + ``task``); non-finite float values are rejected unless
    ``finite=False`` (the server checks the keys it uses in ``check_observation``)."""
    obs: dict[str, Any] = {}
    for key, t in req.observation.items():
        name = f"observation[{clip(key)}]"
        arr = decode_tensor(t, name=name)
        if finite:
            check_finite(arr, name)
        obs[key] = arr
    obs[TASK] = req.task
    return obs


def decode_observation_for_spec(
    req: pb.ObservationRequest,
    spec: Mapping[str, FeatureSpec],
    *,
    max_extra_keys: int = 8,
    max_task_chars: int = 4096,
) -> dict[str, Any]:
    """The server's general path: exactly the spec's keys, each checked (dtype, shape, byte
    length, finite floats), plus ``task``. Keys beyond the spec are not decoded (the
    policy never sees them), but at most ``max_extra_keys`` of them are accepted. Error
    messages name the field and quote client text only up to a bounded length."""
    tensors = req.observation
    n = len(tensors)
    if n > len(spec) + max_extra_keys:
        raise WireError(
            f"observation has {n} tensors; this policy reads {len(spec)} and at most {max_extra_keys} "
            "more are accepted (--max_extra_keys)"
        )
    if len(req.task) > max_task_chars:
        raise WireError(f"task is {len(req.task)} characters; at most {max_task_chars} are accepted")
    obs: dict[str, Any] = {}
    for key, feat in spec.items():
        if key not in tensors:  # (indexing a message map would insert the key)
            have = sorted(tensors)
            listed = ", ".join(clip(k, 32) for k in have[:8]) + (f", ... ({len(have)} keys)" if len(have) > 8 else "")
            raise WireError(f"observation is missing required key {key!r} (has: {listed or 'none'})")
        name = f"observation[{key!r}]"
        arr = decode_tensor(tensors[key], name=name)
        if arr.shape != tuple(feat.shape):
            raise WireError(f"{name} has shape {arr.shape}, expected {tuple(feat.shape)}")
        if arr.dtype != np.dtype(feat.dtype):
            raise WireError(f"{name} has dtype {arr.dtype}, expected {np.dtype(feat.dtype)}")
        check_finite(arr, name)
        obs[key] = arr
    obs[TASK] = req.task
    return obs


class SpecDecoder:
    """Decoder for requests that match one observation spec exactly (the server's hot path).

    Per key the expected dtype name, shape and byte length are computed once; a request
    is accepted only if it has exactly the spec's keys, each with that dtype name, shape
    and length, and finite float values -- the same conditions ``decode_observation`` +
    ``check_observation`` enforce, without building error names, tuples or dtype objects
    per request. Anything else returns None: the caller then runs the general path,
    which raises the precise error (or accepts the request, e.g. with extra keys).
    """

    def __init__(self, spec: Mapping[str, FeatureSpec]) -> None:
        self._entries = []
        ok = True
        for key, feat in spec.items():
            if feat.dtype not in ALLOWED_DTYPES:  # e.g. "<f4": leave it to the general path
                ok = False
                break
            dt = ALLOWED_DTYPES[feat.dtype]
            shape = tuple(feat.shape)
            nbytes = math.prod(shape) * dt.itemsize
            self._entries.append((key, feat.dtype, list(shape), shape, nbytes, dt, dt.kind == "f"))
        self.enabled = ok and TASK not in spec
        self._n = len(self._entries)

    def decode(self, req: pb.ObservationRequest) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        tensors = req.observation
        if len(tensors) != self._n:
            return None
        obs: dict[str, Any] = {}
        for key, dtype_name, shape_list, shape, nbytes, dt, is_float in self._entries:
            if key not in tensors:  # (indexing a message map would insert the key)
                return None
            t = tensors[key]
            data = t.data
            if t.dtype != dtype_name or len(data) != nbytes or t.shape != shape_list:
                return None
            arr = np.frombuffer(data, dtype=dt).reshape(shape)
            if is_float and not np.isfinite(arr).all():
                return None
            obs[key] = arr
        obs[TASK] = req.task
        return obs


def decode_prefix(req: pb.ObservationRequest, action_dim: int, max_rows: int | None = None) -> Prefix | None:
    """``Prefix(action_context, estimated_delay)`` or None when no context was sent.

    The context must be float32 (what the protocol says and ``encode_request`` sends):
    another dtype is rejected rather than cast, so no value can silently overflow to inf
    on the way to the policy; the values are checked to be finite as they will be used."""
    if not req.HasField("action_context"):
        return None
    ctx = decode_tensor(req.action_context, name="action_context")
    if ctx.dtype != _F32:
        raise WireError(f"action_context has dtype {ctx.dtype}, expected float32")
    if ctx.ndim != 2 or ctx.shape[1] != action_dim:
        raise WireError(f"action_context must have shape (N, {action_dim}), got {ctx.shape}")
    if max_rows is not None and ctx.shape[0] > max_rows:
        raise WireError(f"action_context has {ctx.shape[0]} rows; at most {max_rows} are accepted")
    check_finite(ctx, "action_context")
    if req.estimated_delay < 0:
        raise WireError(f"estimated_delay must be >= 0, got {req.estimated_delay}")
    return Prefix(actions=ctx.copy(), delay=int(req.estimated_delay))  # writable, owns its memory


# ---------------------------------------------------------------- metadata


def encode_metadata(md: PolicyMetadata, *, max_batch_size: int = 1, max_message_bytes: int = 0) -> pb.PolicyMetadata:
    msg = pb.PolicyMetadata(
        protocol_version=PROTOCOL_VERSION,
        action_dim=md.action_dim,
        chunk_size=md.chunk_size,
        fps=float(md.fps),
        policy_type=md.policy_type,
        extra_json=json.dumps(dict(md.extra), default=str),
        max_batch_size=max_batch_size,
        max_message_bytes=max_message_bytes,
    )
    if md.prefix_length is not None:
        msg.prefix_length = md.prefix_length
    for mode, n in dict(md.prefix_modes).items():
        msg.prefix_modes[mode] = int(n)
    for key, feat in md.observation_spec.items():
        msg.observation_spec[key].CopyFrom(pb.FeatureSpec(shape=list(feat.shape), dtype=feat.dtype))
    return msg


def decode_metadata(msg: pb.PolicyMetadata) -> PolicyMetadata:
    if msg.protocol_version != PROTOCOL_VERSION:
        raise WireError(
            f"server speaks chunkwise protocol v{msg.protocol_version}, this client v{PROTOCOL_VERSION}: "
            "install the same chunkwise version on both sides"
        )
    extra = json.loads(msg.extra_json) if msg.extra_json else {}
    return PolicyMetadata(
        observation_spec={k: FeatureSpec(tuple(v.shape), v.dtype) for k, v in msg.observation_spec.items()},
        action_dim=msg.action_dim,
        chunk_size=msg.chunk_size,
        fps=msg.fps,
        policy_type=msg.policy_type,
        prefix_length=msg.prefix_length if msg.HasField("prefix_length") else None,
        prefix_modes=dict(msg.prefix_modes),
        extra=extra,
    )
