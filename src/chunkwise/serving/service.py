"""``chunkwise.v1.PolicyService`` implementation: validate, batch, answer.

Request path (all timings on this process's monotonic clock)::

    handler thread: bytes budget -> parse -> session check (no decoding yet) -> decode +
                    validate -> admit (session timestep) -> enqueue      (preprocess)
    leader thread:  queue wait -> stack -> predict_chunk(B) -> finite check
                    (see batcher.py; often the same handler thread)
    handler thread: encode (postprocess) -> reply

Every failure becomes a gRPC status with a readable message that names the field and
quotes client text only up to a bounded length: ``Infer`` aborts the call; ``Stream``
answers that request with ``reply.error`` set and keeps the stream open. The request
deadline (``request_timeout_s``) runs from the request's arrival at the server, so the
wait for a handler thread counts. Limits: ``limits.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Iterator, Mapping

import grpc
from google.protobuf.message import DecodeError

from chunkwise.policies.base import Policy
from chunkwise.serving.batcher import DynamicBatcher, WorkItem
from chunkwise.serving.limits import ByteBudget, ConnectionTracker, Limits, RateLimitedLog, arrival_time, host_of, peer_of
from chunkwise.serving.sessions import Owner, ServingError, SessionTable
from chunkwise.types import Prefix
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import (
    ALLOWED_DTYPES,
    SpecDecoder,
    WireError,
    clip,
    decode_observation_for_spec,
    decode_prefix,
    encode_metadata,
    encode_tensor,
)

log = logging.getLogger(__name__)
_rl = RateLimitedLog(log)
SERVICE_NAME = "chunkwise.v1.PolicyService"
_F32 = ALLOWED_DTYPES["float32"]
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _parse_message(cls: Any, raw: Any, what: str) -> Any:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return raw  # already a message (in-process callers)
    try:
        return cls.FromString(raw)
    except DecodeError as e:
        raise ServingError(_INVALID, f"malformed {what} ({len(raw)} bytes): {clip(e, 120)}") from None


def _parse(raw: bytes) -> pb.ObservationRequest:
    return _parse_message(pb.ObservationRequest, raw, "ObservationRequest")


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(
        self,
        policy: Policy,
        limits: Limits | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        """``limits`` (defaults: ``Limits()``), individual fields overridden by keyword
        (``PolicyService(policy, max_batch_size=8)``). ``credentials`` maps the value of an
        accepted ``authorization`` header to the credential's name (sessions are bound to
        it); the token check itself is the server's interceptor."""
        limits = replace(limits or Limits(), **overrides)
        self.limits = limits
        self.policy = policy
        self.metadata = policy.metadata
        self.request_timeout_s = limits.request_timeout_s
        self.max_message_bytes = limits.max_message_bytes
        self._credentials = dict(credentials or {})
        self.connections = ConnectionTracker(
            limits.max_streams, limits.max_streams_per_connection, limits.stream_idle_timeout_s,
            stuck_after_s=limits.request_timeout_s,
        )
        self.sessions = SessionTable(
            ttl_s=limits.session_ttl_s, max_sessions=limits.max_sessions,
            max_per_connection=limits.max_sessions_per_connection,
            max_per_credential=limits.max_sessions_per_credential,
            takeover_s=limits.session_takeover_s, connection_busy=self.connections.busy,
        )
        self.inflight = ByteBudget(limits.max_inflight_bytes)
        self._modes: dict[str, int] = {k: int(v) for k, v in dict(self.metadata.prefix_modes).items()}
        self._views: dict[str, Policy] = {}
        self._action_dim = self.metadata.action_dim
        self.batcher = DynamicBatcher(
            policy.predict_chunk,
            predict_mode=self._mode_predict,
            max_batch_size=limits.max_batch_size,
            max_wait_ms=limits.max_wait_ms,
            max_queue=limits.max_queue,
            expected_batch=lambda: self.sessions.active_count(within_s=1.0),
            action_dim=self._action_dim,
        )
        self._metadata_msg = encode_metadata(
            self.metadata, max_batch_size=limits.max_batch_size, max_message_bytes=limits.max_message_bytes
        )
        self._spec = dict(self.metadata.observation_spec)
        self._fast_decoder = SpecDecoder(self._spec)
        longest = max([self.metadata.chunk_size, self.metadata.prefix_length or 0, *self._modes.values(), 1])
        self._max_context_rows = 4 * longest  # the client's queue never holds more than a chunk
        self.rejected: dict[str, int] = {}  # status name -> requests answered with it

    def start(self) -> None:
        """Start the idle-stream watchdog (``server.start_server`` does)."""
        self.connections.start()

    def close(self) -> None:
        self.connections.stop()
        self.batcher.close()

    def _mode_predict(self, mode: str):  # noqa: ANN202 - the view's predict_chunk
        view = self._views.get(mode)
        if view is None:  # built once per mode, by the (single) model thread
            view = self._views[mode] = self.policy.with_prefix_mode(mode)  # type: ignore[attr-defined]
        return view.predict_chunk

    def _prefix_length(self, mode: str) -> int | None:
        if not mode:
            return self.metadata.prefix_length
        if mode not in self._modes:
            offered = ", ".join(sorted(self._modes)) or "none"
            raise ServingError(
                _INVALID,
                f"prefix_mode {clip(mode, 32)} is not offered by the served {self.metadata.policy_type} policy "
                f"(offered: {offered})",
            )
        return self._modes[mode]

    def _owner(self, context: Any, peer: str) -> Owner:
        credential = "anonymous"
        if self._credentials:
            credential = "unknown"
            md = getattr(context, "invocation_metadata", None)
            for key, value in (md() or ()) if md is not None else ():
                if key == "authorization":
                    credential = self._credentials.get(value, "unknown")
                    break
        return Owner(credential, host_of(peer), peer)

    def _rejected(self, e: ServingError, peer: str) -> None:
        name = e.code.name
        self.rejected[name] = self.rejected.get(name, 0) + 1
        level = logging.WARNING if e.code == grpc.StatusCode.INTERNAL else logging.INFO
        _rl.log(level, name, "rejected a request from %s: %s: %s", peer, name, e.message[:200])

    def _unexpected(self, exc: Exception, where: str) -> ServingError:
        """A bug of ours met by some input: one rate-limited line (traceback at DEBUG)."""
        _rl.log(logging.ERROR, f"bug:{where}", "unexpected %s in %s: %s", type(exc).__name__, where, clip(exc, 200))
        log.debug("traceback", exc_info=exc)
        return ServingError(grpc.StatusCode.INTERNAL, f"internal server error in {where} ({type(exc).__name__})")

    # ------------------------------------------------------------------ RPCs

    def GetMetadata(self, raw: Any, context: grpc.ServicerContext) -> pb.PolicyMetadata:
        try:
            _parse_message(pb.MetadataRequest, raw, "MetadataRequest")
        except ServingError as e:
            self._rejected(e, peer_of(context))
            context.abort(e.code, e.message)
        return self._metadata_msg

    def Reset(self, raw: Any, context: grpc.ServicerContext) -> pb.ResetReply:
        peer = peer_of(context)
        try:
            request = _parse_message(pb.ResetRequest, raw, "ResetRequest")
            s = self.sessions.reset(request.session_id, request.episode_id, self._owner(context, peer))
        except ServingError as e:
            self._rejected(e, peer)
            context.abort(e.code, e.message)
        return pb.ResetReply(session_id=s.session_id, episode_id=s.episode_id)

    def Infer(self, raw: bytes, context: grpc.ServicerContext) -> pb.ChunkReply:
        arrival = arrival_time()
        peer = peer_of(context)
        self.connections.call_started(peer)
        try:
            n = len(raw)
            self.inflight.acquire(n)
            try:
                return self._handle(self._parse(raw), context, arrival, self._owner(context, peer))
            finally:
                self.inflight.release(n)
        except ServingError as e:
            err = e
        except Exception as exc:  # noqa: BLE001 - never a traceback per request
            err = self._unexpected(exc, "Infer")
        finally:
            self.connections.call_finished(peer)
        self._rejected(err, peer)
        context.abort(err.code, err.message)

    def Stream(self, raw_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.ChunkReply]:
        # Requests of one stream are answered in order; a client may pipeline them.
        peer = peer_of(context)
        try:
            slot = self.connections.open_stream(peer, context)
        except ServingError as e:
            self._rejected(e, peer)
            context.abort(e.code, e.message)
        try:
            owner = self._owner(context, peer)
            for raw in raw_iterator:
                arrival = time.monotonic()
                slot.busy, slot.last_activity = True, arrival
                request = None
                n = len(raw)
                try:
                    self.inflight.acquire(n)
                    try:
                        request = self._parse(raw)
                        reply = self._handle(request, context, arrival, owner)
                    finally:
                        self.inflight.release(n)
                except Exception as exc:  # noqa: BLE001 - in-band error, the stream stays open
                    e = exc if isinstance(exc, ServingError) else self._unexpected(exc, "Stream")
                    self._rejected(e, peer)
                    if request is None:  # unparseable: answer with empty ids
                        request = pb.ObservationRequest()
                    reply = pb.ChunkReply(
                        session_id=request.session_id[:256],
                        episode_id=request.episode_id,
                        first_timestep=request.timestep,
                        request_id=request.request_id,
                        error=pb.Status(code=e.code.value[0], message=e.message),
                    )
                yield reply
                slot.busy, slot.last_activity = False, time.monotonic()
        finally:
            self.connections.close_stream(slot)

    def _parse(self, raw: bytes) -> pb.ObservationRequest:
        if len(raw) > self.max_message_bytes:
            raise ServingError(
                _INVALID,
                f"request is {len(raw)} bytes; this server accepts at most {self.max_message_bytes} "
                "(--max_message_bytes)",
            )
        return _parse(raw)

    def method_handlers(self, control_pool: Any = None) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers; every method takes raw bytes so that undecodable messages get
        INVALID_ARGUMENT from us instead of gRPC's generic INTERNAL deserialization error.
        ``control_pool`` (a ThreadPoolExecutor) runs GetMetadata and Reset, so they never
        wait behind Streams and Infer calls. Register them with
        ``server.add_registered_method_handlers`` (matched in gRPC's core, no per-call
        Python lookup through generic handlers)."""
        out = pb.ChunkReply.SerializeToString

        def get_metadata(raw: bytes, context: grpc.ServicerContext) -> pb.PolicyMetadata:
            return self.GetMetadata(raw, context)

        def reset(raw: bytes, context: grpc.ServicerContext) -> pb.ResetReply:
            return self.Reset(raw, context)

        if control_pool is not None:
            get_metadata.experimental_thread_pool = control_pool  # type: ignore[attr-defined]
            reset.experimental_thread_pool = control_pool  # type: ignore[attr-defined]
        return {
            "GetMetadata": grpc.unary_unary_rpc_method_handler(
                get_metadata, response_serializer=pb.PolicyMetadata.SerializeToString
            ),
            "Reset": grpc.unary_unary_rpc_method_handler(reset, response_serializer=pb.ResetReply.SerializeToString),
            "Infer": grpc.unary_unary_rpc_method_handler(self.Infer, response_serializer=out),
            "Stream": grpc.stream_stream_rpc_method_handler(self.Stream, response_serializer=out),
        }

    def handler(self) -> grpc.GenericRpcHandler:
        """The same handlers as one generic handler (for servers that mix services)."""
        return grpc.method_handlers_generic_handler(SERVICE_NAME, self.method_handlers())

    # ------------------------------------------------------------------ core

    def _handle(
        self, request: pb.ObservationRequest, context: Any, arrival: float | None = None, owner: Owner | None = None
    ) -> pb.ChunkReply:
        t0 = time.perf_counter()
        arrival = time.monotonic() if arrival is None else arrival
        owner = owner or self._owner(context, peer_of(context))
        try:
            # Hot path: a request that matches the spec exactly, checked key by key
            # against precomputed dtype/shape/length (and NaN/inf); else the general path.
            obs = self._fast_decoder.decode(request)
            if obs is None:
                # Before any general decoding: a request for a session that is not (or
                # no longer) the client's costs nothing more. Nothing is recorded yet.
                self.sessions.check(request.session_id, request.episode_id, request.timestep, owner)
            mode = request.prefix_mode
            n = self._prefix_length(mode)
            # The policy gets exactly what a local executor would give it (PolicyMetadata):
            # nothing unless it reads a prefix, and at most its prefix_length actions.
            # A context is validated even when the policy does not read it.
            prefix = None
            if request.HasField("action_context"):
                prefix = decode_prefix(request, self._action_dim, max_rows=self._max_context_rows)
                if n is None:
                    prefix = None
                elif n > 0 and len(prefix.actions) > n:
                    prefix = Prefix(actions=prefix.actions[:n], delay=prefix.delay)
            if obs is None:
                # Keys the policy did not ask for are not decoded nor forwarded (at most
                # max_extra_keys of them are accepted).
                obs = decode_observation_for_spec(
                    request, self._spec, max_extra_keys=self.limits.max_extra_keys,
                    max_task_chars=self.limits.max_task_chars,
                )
            elif len(obs["task"]) > self.limits.max_task_chars:
                raise WireError(f"task is {len(obs['task'])} characters; at most {self.limits.max_task_chars} are accepted")
        except (WireError, ValueError) as e:
            raise ServingError(_INVALID, str(e)) from None
        self.sessions.admit(request.session_id, request.episode_id, request.timestep, owner)

        deadline = arrival + self.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, time.monotonic() + remaining)
        item = WorkItem(obs=obs, prefix=prefix, deadline=deadline, alive=context.is_active, mode=mode, arrival=arrival)
        preprocess_ms = 1000 * (time.perf_counter() - t0)
        result = self.batcher.process(item)
        t_post = time.perf_counter()
        reply = pb.ChunkReply(
            session_id=request.session_id,
            episode_id=request.episode_id,
            first_timestep=request.timestep,
            request_id=request.request_id,
        )
        actions = result.actions
        if actions.dtype == _F32 and actions.flags.c_contiguous:  # the usual case: fill in place
            out = reply.actions
            out.dtype = "float32"
            out.shape.extend(actions.shape)
            out.data = actions.tobytes()
        else:
            encode_tensor(actions, out=reply.actions)
        tm = reply.timings
        tm.queue_wait_ms = result.queue_wait_ms
        tm.preprocess_ms = preprocess_ms + result.stack_ms
        tm.model_ms = result.model_ms
        tm.batch_size = result.batch_size
        tm.postprocess_ms = 1000 * (time.perf_counter() - t_post)
        return reply
