"""Resource limits of the server: threads, streams, connections, bytes, auth failures, logs.

The gRPC Python server runs every call on a thread of its pool, and an open ``Stream``
holds its thread for as long as it is open. Without limits, a client that opens streams
and never sends (or freezes: SIGSTOP, half-open TCP) takes every thread, and health
checks, ``GetMetadata``, ``Reset`` and every other client wait. The pieces here keep
that from happening (``server.py`` wires them up; defaults in ``Limits``)::

    control pool (4 threads)  GetMetadata, Reset, health, auth refusals: never queue
                              behind streams or Infer calls
    model pool (max_workers)  Stream + Infer; streams <= max_streams (< max_workers) and
                              <= max_streams_per_connection per connection, so Infer
                              calls always find threads; a stream with no message for
                              stream_idle_timeout_s is closed (UNAVAILABLE)
    keepalive                 the server pings every connection; a peer that does not
                              answer within keepalive_timeout_s is dropped with its calls
    arrival time              each call is stamped when gRPC hands it to the pool, so
                              the request deadline counts the wait for a thread
    in-flight bytes           requests admitted and not yet answered hold at most
                              max_inflight_bytes; more -> RESOURCE_EXHAUSTED
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from chunkwise.serving.sessions import ServingError

log = logging.getLogger(__name__)
MiB = 1 << 20


@dataclass
class Limits:
    """Every limit of a PolicyService / server, with its default (docs/serving.md, "Limits")."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 64  # requests waiting for the model
    request_timeout_s: float = 10.0  # from the request's arrival at the server
    session_ttl_s: float = 300.0
    max_sessions: int = 1024
    max_sessions_per_connection: int = 64
    max_sessions_per_credential: int = 512  # per token (all token-less clients are one credential)
    session_takeover_s: float = 5.0  # another connection of the same client may take a session over
    max_message_bytes: int = 16 * MiB
    max_inflight_bytes: int = 128 * MiB
    max_extra_keys: int = 8  # observation tensors beyond the policy's spec (ignored, not decoded)
    max_task_chars: int = 4096
    max_streams: int = 64
    max_streams_per_connection: int = 16
    stream_idle_timeout_s: float = 60.0
    keepalive_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    max_workers: int = 0  # model pool threads; 0 = max_streams + max_queue + 8
    control_workers: int = 4
    max_auth_failures_per_minute: int = 10  # per client address

    def __post_init__(self) -> None:
        ints = ("max_batch_size", "max_queue", "max_sessions", "max_sessions_per_connection",
                "max_sessions_per_credential", "max_message_bytes", "max_inflight_bytes", "max_task_chars",
                "max_streams", "max_streams_per_connection", "control_workers", "max_auth_failures_per_minute")
        for name in ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_extra_keys < 0 or self.max_workers < 0:
            raise ValueError("max_extra_keys and max_workers must be >= 0")
        positive = ("request_timeout_s", "session_ttl_s", "stream_idle_timeout_s", "keepalive_s", "keepalive_timeout_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.session_takeover_s < 0:
            raise ValueError("max_wait_ms and session_takeover_s must be >= 0")
        if self.max_inflight_bytes < self.max_message_bytes:
            raise ValueError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be >= max_message_bytes ({self.max_message_bytes})"
            )
        if self.max_workers and self.max_workers <= self.max_streams:
            raise ValueError(
                f"max_workers ({self.max_workers}) must exceed max_streams ({self.max_streams}): every open "
                "stream holds a thread, and Infer calls need threads too"
            )

    @property
    def workers(self) -> int:
        return self.max_workers or self.max_streams + self.max_queue + 8


# ---------------------------------------------------------------------------- arrival time

_arrival = threading.local()


class ArrivalExecutor(futures.ThreadPoolExecutor):
    """A thread pool that records when each task was submitted (= when gRPC accepted the
    call); ``arrival_time()`` inside the task returns it, so deadlines include the wait
    for a free thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:  # type: ignore[override]
        return super().submit(_stamped, time.monotonic(), fn, args, kwargs)


def _stamped(t: float, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    _arrival.t = t
    try:
        return fn(*args, **kwargs)
    finally:
        _arrival.t = None


def arrival_time() -> float:
    """When the current call reached the server (now, outside an ``ArrivalExecutor``)."""
    t = getattr(_arrival, "t", None)
    return time.monotonic() if t is None else t


# ---------------------------------------------------------------------------- peers


def peer_of(context: Any) -> str:
    """``ipv4:1.2.3.4:5678`` (one connection); "local" for in-process test contexts."""
    peer = getattr(context, "peer", None)
    if peer is None:
        return "local"
    try:
        return peer() or "unknown"
    except Exception:  # noqa: BLE001 - a context without a transport
        return "unknown"


def host_of(peer: str) -> str:
    """The client address without the port: ``ipv4:1.2.3.4:5678`` -> ``ipv4:1.2.3.4``."""
    if peer.startswith(("ipv4:", "ipv6:")):
        head, sep, port = peer.rpartition(":")
        if sep and port.isdigit() and head not in ("ipv4", "ipv6"):
            return head
    return peer


def cancel_call(context: Any, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with ``code`` (plain CANCELLED if gRPC's internals
    differ from the version this was written against)."""
    try:
        context._rpc_event.call.cancel(code.value[0], details)  # noqa: SLF001
    except Exception:  # noqa: BLE001
        context.cancel()


# ---------------------------------------------------------------------------- streams


class StreamSlot:
    __slots__ = ("peer", "context", "opened", "last_activity", "busy", "closed_reason")

    def __init__(self, peer: str, context: Any, now: float) -> None:
        self.peer = peer
        self.context = context
        self.opened = now
        self.last_activity = now
        self.busy = False  # a message is being answered (never idle then)
        self.closed_reason = ""


class ConnectionTracker:
    """Open streams (global and per connection), calls in progress per connection, and
    the idle-stream watchdog."""

    def __init__(
        self, max_streams: int, max_streams_per_connection: int, idle_timeout_s: float, stuck_after_s: float = 10.0
    ) -> None:
        """A stream is closed when it has had no message for ``idle_timeout_s``, or when its
        last reply has not been taken by the client for ``idle_timeout_s + stuck_after_s``
        (a client that sends but never reads would otherwise hold its thread forever)."""
        self.max_streams = max_streams
        self.max_per_connection = max_streams_per_connection
        self.idle_timeout_s = idle_timeout_s
        self.stuck_after_s = stuck_after_s
        self._lock = threading.Lock()
        self._streams: dict[str, set[StreamSlot]] = {}
        self._n_streams = 0
        self._active: dict[str, int] = {}  # peer -> calls in progress (streams included)
        self.idle_closed = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- calls
    def call_started(self, peer: str) -> None:
        with self._lock:
            self._active[peer] = self._active.get(peer, 0) + 1

    def call_finished(self, peer: str) -> None:
        with self._lock:
            n = self._active.get(peer, 0) - 1
            if n > 0:
                self._active[peer] = n
            else:
                self._active.pop(peer, None)

    def busy(self, peer: str) -> bool:
        """Some call of connection ``peer`` is in progress."""
        with self._lock:
            return self._active.get(peer, 0) > 0

    # -- streams
    def open_stream(self, peer: str, context: Any) -> StreamSlot:
        with self._lock:
            mine = self._streams.get(peer)
            if self._n_streams >= self.max_streams:
                self.refused += 1
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"server already has {self._n_streams} open streams (--max_streams={self.max_streams}); "
                    "retry with backoff or use Infer",
                )
            if mine is not None and len(mine) >= self.max_per_connection:
                self.refused += 1
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this connection already has {len(mine)} open streams "
                    f"(--max_streams_per_connection={self.max_per_connection}); close one first",
                )
            slot = StreamSlot(peer, context, time.monotonic())
            if mine is None:
                mine = self._streams[peer] = set()
            mine.add(slot)
            self._n_streams += 1
            self._active[peer] = self._active.get(peer, 0) + 1
            return slot

    def close_stream(self, slot: StreamSlot) -> None:
        with self._lock:
            mine = self._streams.get(slot.peer)
            if mine is None or slot not in mine:
                return
            mine.discard(slot)
            if not mine:
                del self._streams[slot.peer]
            self._n_streams -= 1
        self.call_finished(slot.peer)

    def open_streams(self, peer: str | None = None) -> int:
        with self._lock:
            return self._n_streams if peer is None else len(self._streams.get(peer, ()))

    def sweep(self, now: float | None = None) -> int:
        """Close streams idle for longer than ``idle_timeout_s``; returns how many."""
        now = time.monotonic() if now is None else now
        stuck_s = self.idle_timeout_s + self.stuck_after_s
        with self._lock:
            idle = [s for ss in self._streams.values() for s in ss
                    if not s.closed_reason and now - s.last_activity > (stuck_s if s.busy else self.idle_timeout_s)]
            for s in idle:
                s.closed_reason = "stuck" if s.busy else "idle"
        for s in idle:
            if s.busy:
                why = f"stream closed: a reply has not been taken for {stuck_s:g} s"
            else:
                why = f"stream closed: no message for {self.idle_timeout_s:g} s (--stream_idle_timeout_s); open a new one"
            cancel_call(s.context, grpc.StatusCode.UNAVAILABLE, why)
        self.idle_closed += len(idle)
        if idle:
            log.info("closed %d idle stream(s) (no message for %g s)", len(idle), self.idle_timeout_s)
        return len(idle)

    def start(self) -> None:
        interval = min(1.0, max(0.05, self.idle_timeout_s / 4))

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - the watchdog must keep running
                    log.exception("idle-stream sweep failed")

        self._thread = threading.Thread(target=run, name="chunkwise-idle-streams", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


# ---------------------------------------------------------------------------- bytes


class ByteBudget:
    """Bytes of requests admitted and not yet answered (``with budget.hold(n): ...``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def acquire(self, n: int) -> None:
        with self._lock:
            if self.held + n > self.limit:
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"server holds {self.held / MiB:.1f} MiB of requests in flight; this {n / MiB:.1f} MiB request "
                    f"would exceed --max_inflight_bytes={self.limit}; retry with backoff",
                )
            self.held += n
            if self.held > self.peak:
                self.peak = self.held

    def release(self, n: int) -> None:
        with self._lock:
            self.held -= n


# ---------------------------------------------------------------------------- auth failures


class AuthLimiter:
    """Failed-token budget per client address: ``per_minute`` failures, refilled evenly.

    An address that ran out is refused without its token being compared (so a guesser
    gets ``per_minute`` tries a minute), until the budget refills by one."""

    def __init__(self, per_minute: int, max_hosts: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_hosts = max_hosts
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, last update)
        self._lock = threading.Lock()
        self._next_gc = 0.0

    def _level(self, host: str, now: float) -> float:
        level, t = self._buckets.get(host, (self.capacity, now))
        return min(self.capacity, level + (now - t) * self.rate)

    @property
    def any_locked(self) -> bool:
        """Cheap and conservative: some address failed recently (its budget is not full)."""
        if not self._buckets:
            return False
        now = time.monotonic()
        if now >= self._next_gc:
            with self._lock:
                self._next_gc = now + 5.0
                for h in [h for h in self._buckets if self._level(h, now) >= self.capacity]:
                    del self._buckets[h]
        return bool(self._buckets)

    def locked_for(self, host: str) -> float:
        """Seconds until ``host`` may try again (0 = not locked)."""
        now = time.monotonic()
        with self._lock:
            if host not in self._buckets:
                return 0.0
            level = self._level(host, now)
            if level >= self.capacity:
                del self._buckets[host]
                return 0.0
            return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def failed(self, host: str) -> None:
        now = time.monotonic()
        with self._lock:
            level = self._level(host, now)
            self._buckets[host] = (max(0.0, level - 1.0), now)
            if len(self._buckets) > self.max_hosts:  # forget the fullest buckets first
                for h, _ in sorted(self._buckets.items(), key=lambda kv: -self._level(kv[0], now))[: self.max_hosts // 10]:
                    del self._buckets[h]


# ---------------------------------------------------------------------------- logging


class RateLimitedLog:
    """At most one line per ``key`` every ``interval_s``; the next line counts the rest."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: Any) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            n = self._suppressed.pop(key, 0)
        if n:
            msg += f" ({n} similar in the last {self.interval_s:g} s not logged)"
        self.logger.log(level, msg, *args)
        return True
