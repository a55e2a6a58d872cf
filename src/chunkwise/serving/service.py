"""``chunkwise.v1.PolicyService`` implementation: validate, batch, answer.

Request path (all timings on this process's monotonic clock)::

    handler thread: parse + decode + validate (preprocess) -> enqueue
    leader thread:  queue wait -> stack -> predict_chunk(B)   (see batcher.py; often
                                                               the same handler thread)
    handler thread: slice + encode (postprocess) -> reply

Every failure becomes a gRPC status with a readable message: ``Infer`` aborts the call;
``Stream`` answers that request with ``reply.error`` set and keeps the stream open.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import grpc
from google.protobuf.message import DecodeError

from chunkwise.policies.base import Policy
from chunkwise.serving.batcher import DynamicBatcher, WorkItem
from chunkwise.serving.sessions import ServingError, SessionTable
from chunkwise.types import TASK, Prefix, check_observation
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import (
    ALLOWED_DTYPES,
    SpecDecoder,
    WireError,
    decode_observation,
    decode_prefix,
    encode_metadata,
    encode_tensor,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "chunkwise.v1.PolicyService"
_F32 = ALLOWED_DTYPES["float32"]


def _parse(raw: bytes) -> pb.ObservationRequest:
    try:
        return pb.ObservationRequest.FromString(raw)
    except DecodeError as e:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, f"malformed ObservationRequest ({len(raw)} bytes): {e}"
        ) from None


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(
        self,
        policy: Policy,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        request_timeout_s: float = 10.0,
        session_ttl_s: float = 300.0,
        max_sessions: int = 1024,
        max_message_bytes: int = 16 << 20,
    ) -> None:
        self.policy = policy
        self.metadata = policy.metadata
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        self.sessions = SessionTable(ttl_s=session_ttl_s, max_sessions=max_sessions)
        self._modes: dict[str, int] = {k: int(v) for k, v in dict(self.metadata.prefix_modes).items()}
        self._views: dict[str, Policy] = {}
        self.batcher = DynamicBatcher(
            policy.predict_chunk,
            predict_mode=self._mode_predict,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            expected_batch=lambda: self.sessions.active_count(within_s=1.0),
        )
        self._metadata_msg = encode_metadata(
            self.metadata, max_batch_size=max_batch_size, max_message_bytes=max_message_bytes
        )
        self._spec = dict(self.metadata.observation_spec)
        self._fast_decoder = SpecDecoder(self._spec)
        self._action_dim = self.metadata.action_dim

    def close(self) -> None:
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
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prefix_mode {mode!r} is not offered by the served {self.metadata.policy_type} policy "
                f"(offered: {offered})",
            )
        return self._modes[mode]

    # ------------------------------------------------------------------ RPCs

    def GetMetadata(self, request: pb.MetadataRequest, context: grpc.ServicerContext) -> pb.PolicyMetadata:
        return self._metadata_msg

    def Reset(self, request: pb.ResetRequest, context: grpc.ServicerContext) -> pb.ResetReply:
        try:
            s = self.sessions.reset(request.session_id, request.episode_id)
        except ServingError as e:
            context.abort(e.code, e.message)
        return pb.ResetReply(session_id=s.session_id, episode_id=s.episode_id)

    def Infer(self, raw: bytes, context: grpc.ServicerContext) -> pb.ChunkReply:
        try:
            return self._handle(self._parse(raw), context)
        except ServingError as e:
            context.abort(e.code, e.message)

    def Stream(self, raw_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.ChunkReply]:
        # Requests of one stream are answered in order; a client may pipeline them.
        for raw in raw_iterator:
            request = None
            try:
                request = self._parse(raw)
                yield self._handle(request, context)
            except ServingError as e:
                if request is None:  # unparseable: answer with empty ids
                    request = pb.ObservationRequest()
                yield pb.ChunkReply(
                    session_id=request.session_id,
                    episode_id=request.episode_id,
                    first_timestep=request.timestep,
                    request_id=request.request_id,
                    error=pb.Status(code=e.code.value[0], message=e.message),
                )

    def _parse(self, raw: bytes) -> pb.ObservationRequest:
        if len(raw) > self.max_message_bytes:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is {len(raw)} bytes; this server accepts at most {self.max_message_bytes} "
                "(--max_message_bytes)",
            )
        return _parse(raw)

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers; Infer/Stream take raw bytes so that undecodable messages get
        INVALID_ARGUMENT from us instead of gRPC's generic INTERNAL deserialization error.
        Register them with ``server.add_registered_method_handlers`` (matched in gRPC's
        core, no per-call Python lookup through generic handlers)."""
        out = pb.ChunkReply.SerializeToString
        return {
            "GetMetadata": grpc.unary_unary_rpc_method_handler(
                self.GetMetadata,
                request_deserializer=pb.MetadataRequest.FromString,
                response_serializer=pb.PolicyMetadata.SerializeToString,
            ),
            "Reset": grpc.unary_unary_rpc_method_handler(
                self.Reset,
                request_deserializer=pb.ResetRequest.FromString,
                response_serializer=pb.ResetReply.SerializeToString,
            ),
            "Infer": grpc.unary_unary_rpc_method_handler(self.Infer, response_serializer=out),
            "Stream": grpc.stream_stream_rpc_method_handler(self.Stream, response_serializer=out),
        }

    def handler(self) -> grpc.GenericRpcHandler:
        """The same handlers as one generic handler (for servers that mix services)."""
        return grpc.method_handlers_generic_handler(SERVICE_NAME, self.method_handlers())

    # ------------------------------------------------------------------ core

    def _handle(self, request: pb.ObservationRequest, context: grpc.ServicerContext) -> pb.ChunkReply:
        t0 = time.perf_counter()
        try:
            # Hot path: a request that matches the spec exactly, checked key by key
            # against precomputed dtype/shape/length (and NaN/inf); else the general path.
            obs = self._fast_decoder.decode(request)
            mode = request.prefix_mode
            n = self._prefix_length(mode)
            # The policy gets exactly what a local executor would give it (PolicyMetadata):
            # nothing unless it reads a prefix, and at most its prefix_length actions.
            prefix = None
            if n is not None and request.HasField("action_context"):
                prefix = decode_prefix(request, self._action_dim)
                if prefix is not None and n > 0 and len(prefix.actions) > n:
                    prefix = Prefix(actions=prefix.actions[:n], delay=prefix.delay)
            if obs is None:
                obs = decode_observation(request, finite=False)  # check_observation checks NaN/inf
                check_observation(obs, self._spec)
                # Keys the policy did not ask for are not forwarded (they would break stacking).
                obs = {k: obs[k] for k in self._spec} | {TASK: obs[TASK]}
        except (WireError, ValueError) as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        # Session check last: a malformed request does not advance the session's timestep.
        self.sessions.admit(request.session_id, request.episode_id, request.timestep)

        remaining = context.time_remaining()
        timeout = self.request_timeout_s if remaining is None else min(remaining, self.request_timeout_s)
        item = WorkItem(obs=obs, prefix=prefix, deadline=time.monotonic() + timeout, alive=context.is_active, mode=mode)
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
