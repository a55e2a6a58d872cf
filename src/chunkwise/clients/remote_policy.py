"""``RemotePolicy``: the Policy protocol over the wire (a PolicyServer behind it).

Executors call ``predict_chunk`` as on a local model; each batch element is its own
server session (``<session_id>/<i>``), so the server's dynamic batcher recombines them
with other clients' requests. ``reset()`` starts a new episode on every session.

Connection loss (server restart): calls are retried with exponential backoff
(``backoff_s * 2**k``, capped at ``max_backoff_s``, for up to ``reconnect_timeout_s``);
a session the restarted server does not know is re-opened with ``Reset`` first.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Sequence, TypeVar

import grpc
import numpy as np

from chunkwise.types import TASK, ObservationBatch, PolicyMetadata, Prefix, unbatch_observation
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import decode_metadata, decode_tensor, encode_request

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = {grpc.StatusCode.UNAVAILABLE}
RETRY_CALL = RETRYABLE | {grpc.StatusCode.ABORTED}  # what call_with_retry waits out


class _Failed:
    """A finished call's error in the shape of a future (for ``_result``)."""

    def __init__(self, error: grpc.RpcError) -> None:
        self.error = error

    def result(self) -> None:
        raise self.error


class RemoteError(RuntimeError):
    """The server answered a request with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def status_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def make_channel(
    address: str, root_certificates: bytes | None = None, max_message_bytes: int = 64 << 20
) -> grpc.Channel:
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Reconnect quickly after a server restart (default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # One TCP connection per RemotePolicy (gRPC would otherwise share one between all
        # channels to the same address in a process); the server limits streams and
        # sessions per connection.
        ("grpc.use_local_subchannel_pool", 1),
        # Keepalive: detect a dead server or a half-open connection within ~30 s while a
        # call is open (the server accepts pings down to every 10 s).
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.ping_timeout_ms", 10_000),  # any unanswered ping, not only keepalive ones
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if root_certificates is not None:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates), options=options)
    return grpc.insecure_channel(address, options=options)


def metadata_in_mode(md: PolicyMetadata, mode: str, who: str = "the server") -> PolicyMetadata:
    """The metadata a policy has once switched to prefix mode ``mode``."""
    from dataclasses import replace

    modes = dict(md.prefix_modes)
    if mode not in modes:
        raise ValueError(f"{who} offers prefix modes {sorted(modes)}, not {mode!r}")
    return replace(md, prefix_length=modes[mode], extra={**dict(md.extra), "prefix_mode": mode})


class RemotePolicy:
    """A Policy whose ``predict_chunk`` runs on a chunkwise PolicyServer."""

    def __init__(
        self,
        address: str,
        session_id: str | None = None,
        token: str | None = None,
        *,
        root_certificates: bytes | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        reconnect_timeout_s: float = 30.0,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.address = address
        self.session_id = session_id or f"remote-{uuid.uuid4().hex[:12]}"
        self.timeout_s = timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # None rather than () without a token: gRPC then skips metadata handling per call.
        self.call_metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        self.channel = make_channel(address, root_certificates)
        self.stub = pb_grpc.PolicyServiceStub(self.channel)
        self.episode_id = 0
        self._open: set[str] = set()  # sessions Reset at the current episode
        self._timesteps: dict[str, itertools.count] = {}
        self._lock = threading.Lock()
        self.reconnects = 0
        self.prefix_mode = ""  # "" = the policy as served; see with_prefix_mode
        try:
            # wait_for_ready: a server that is still starting is waited for, up to the timeout
            msg = self.stub.GetMetadata(
                pb.MetadataRequest(), timeout=connect_timeout_s, metadata=self.call_metadata, wait_for_ready=True
            )
        except grpc.RpcError as e:
            self.channel.close()
            code = e.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ConnectionError(
                    f"cannot reach a chunkwise server at {address} within {connect_timeout_s:g} s "
                    f"({code.name}); is `chunkwise serve` running there"
                    + ("?" if root_certificates else ", and does it serve TLS (then pass --tls_root=<CA PEM>)?")
                ) from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise ConnectionError(
                    f"the chunkwise server at {address} refused the token ({e.details()}); pass --token=<the server's token>"
                ) from None
            raise RemoteError(code, e.details() or "") from None
        try:
            self._metadata = decode_metadata(msg)
        except Exception:
            self.channel.close()
            raise
        self.server_max_batch_size = msg.max_batch_size

    # ------------------------------------------------------------------ Policy protocol

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        b = len(obs_batch[TASK]) if TASK in obs_batch else len(next(iter(obs_batch.values())))
        sessions = [self.session_id if b == 1 else f"{self.session_id}/{i}" for i in range(b)]
        for sid in sessions:
            self.ensure_session(sid)
        requests = []
        for i, sid in enumerate(sessions):
            p = prefix[i] if prefix is not None else None
            requests.append(
                encode_request(
                    unbatch_observation(obs_batch, i),
                    session_id=sid,
                    episode_id=self.episode_id,
                    timestep=next(self._timesteps[sid]),
                    action_context=None if p is None else p.actions,
                    estimated_delay=0 if p is None else p.delay,
                    prefix_mode=self.prefix_mode,
                )
            )
        # Send all elements at once; the server batches them (with other clients' work).
        if len(requests) == 1:
            replies = [self.infer(requests[0])]
        else:
            futures = [self._infer_future(r) for r in requests]
            replies = [self._result(f, r) for f, r in zip(futures, requests)]
        return np.stack([decode_tensor(r.actions, name="actions") for r in replies]).astype(np.float32)

    def with_prefix_mode(self, mode: str) -> "RemotePolicy":
        """This server's policy in prefix mode ``mode`` (one of ``metadata.prefix_modes``).

        Shares the channel; every request then asks the server for that mode, and the
        view's ``prefix_length`` is the mode's, so clients send what the mode reads."""
        import copy

        view = copy.copy(self)
        view.prefix_mode = mode
        view._metadata = metadata_in_mode(self._metadata, mode, f"the server at {self.address}")
        return view

    def reset(self) -> None:
        """New episode on every session: replies for the old one can no longer arrive."""
        with self._lock:
            self.episode_id += 1
            self._open.clear()

    # ------------------------------------------------------------------ lower level

    def ensure_session(self, sid: str) -> None:
        with self._lock:
            if sid in self._open:
                return
        self.reset_session(sid, self.episode_id)

    def reset_session(self, sid: str, episode_id: int) -> None:
        self.call_with_retry(
            lambda: self.stub.Reset(
                pb.ResetRequest(session_id=sid, episode_id=episode_id),
                timeout=self.timeout_s,
                metadata=self.call_metadata,
            )
        )
        with self._lock:
            self._open.add(sid)
            self._timesteps.setdefault(sid, itertools.count())

    def infer(self, request: pb.ObservationRequest) -> pb.ChunkReply:
        """One blocking Infer (cheaper than a future in grpc Python), with the same retries."""
        try:
            return self.stub.Infer(request, timeout=self.timeout_s, metadata=self.call_metadata)
        except grpc.RpcError as e:
            failed = e
        return self._result(_Failed(failed), request)

    def _infer_future(self, request: pb.ObservationRequest) -> Any:
        return self.stub.Infer.future(request, timeout=self.timeout_s, metadata=self.call_metadata)

    def _result(self, future: Any, request: pb.ObservationRequest) -> pb.ChunkReply:
        try:
            return future.result()
        except grpc.RpcError as e:
            code = e.code()
            if code in RETRYABLE or code == grpc.StatusCode.NOT_FOUND:
                # Server restarted (or session expired): re-open the session and retry once
                # the server is back; timesteps restart fine on a fresh session.
                def again() -> pb.ChunkReply:
                    self.reset_session(request.session_id, request.episode_id)
                    return self.stub.Infer(request, timeout=self.timeout_s, metadata=self.call_metadata)

                self.reconnects += 1
                return self.call_with_retry(again)
            raise RemoteError(code, e.details() or "") from None

    def call_with_retry(self, fn: Callable[[], T]) -> T:
        """``fn()``, retrying UNAVAILABLE (server down or restarting) and ABORTED (the session
        is still held by this client's previous, dying connection) with exponential backoff
        for reconnect_timeout_s."""
        t_end = time.monotonic() + self.reconnect_timeout_s
        delay = self.backoff_s
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                code = e.code()
                if code not in RETRY_CALL or time.monotonic() + delay > t_end:
                    raise RemoteError(code, e.details() or "") from None
                log.info("server at %s unavailable (%s); retrying in %.2fs", self.address, e.details(), delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
            except RemoteError as e:
                if e.code not in RETRY_CALL or time.monotonic() + delay > t_end:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def open_stream(self, requests: Iterator[pb.ObservationRequest]) -> Iterator[pb.ChunkReply]:
        """Bidirectional stream; the caller drives ``requests`` and reads replies."""
        return self.stub.Stream(requests, metadata=self.call_metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "RemotePolicy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
