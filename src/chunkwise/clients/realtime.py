"""Wall-clock asynchronous chunk execution against a PolicyServer (used by Sim/RobotClient).

Two threads share one ``ActionQueue`` (under a lock):

* the **control loop** ticks at ``fps * time_scale``: at tick k it captures obs_k,
  sends it when nothing is in flight and ``len(queue)/actions_per_chunk <= g``
  (``must_go`` when the queue is empty), then executes ``queue.pop(now=k)`` or the idle
  action (a stall);
* the **receiver** reads the session's bidirectional stream and merges each chunk,
  labelled ``first_timestep + i``; labels already passed are stale and dropped.

::

    tick       k    k+1   k+2   k+3   k+4 ...
    control    obs_k sent                          pop(k) pop(k+1) ...
    receiver               chunk(k) arrives -> merge labels k..k+H-1 (k, k+1 stale)

Replies carry the episode id; after ``start_episode`` replies of older episodes are
discarded, so an old plan is never executed. If the stream breaks (server restart), the
receiver reconnects with exponential backoff, re-opens the session and the control loop
sends a fresh observation (a must-go one if the queue ran dry meanwhile).
Round-trip times are measured on this process's monotonic clock only.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
import numpy as np

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy, status_code
from chunkwise.scheduling import ActionQueue, check_aggregate_name, should_send_observation
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire.codec import decode_tensor, encode_request

log = logging.getLogger(__name__)
_CLOSE = object()


@dataclass
class ClientConfig:
    actions_per_chunk: int = 50
    chunk_size_threshold: float = 0.5
    aggregate_fn_name: str = "weighted_average"
    time_scale: float = 1.0  # > 1 runs the control loop faster than real time (tests)
    send_action_context: bool = True  # when the policy's metadata asks for it
    request_timeout_s: float = 5.0  # an unanswered request is given up after this

    def __post_init__(self) -> None:
        check_aggregate_name(self.aggregate_fn_name)
        if self.actions_per_chunk <= 0:
            raise ValueError(f"actions_per_chunk must be positive, got {self.actions_per_chunk}")
        if not 0.0 <= self.chunk_size_threshold <= 1.0:
            raise ValueError(f"chunk_size_threshold must be in [0, 1], got {self.chunk_size_threshold}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {self.time_scale}")


@dataclass
class EpisodeStats:
    episode_id: int
    steps: int = 0
    stalls: int = 0
    success: bool = False
    reward: float = 0.0
    chunks: int = 0
    requests: int = 0
    must_go: int = 0
    stale_episode_replies: int = 0  # replies for an older episode, discarded
    errors: list[str] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)  # client monotonic clock
    model_ms: list[float] = field(default_factory=list)  # server monotonic clock
    server_ms: list[float] = field(default_factory=list)  # queue + pre + model + post
    batch_sizes: list[int] = field(default_factory=list)
    executed: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (label, action)
    overruns: int = 0  # ticks where the loop fell behind the clock


class ChunkClient:
    """Runs episodes of ``get_obs -> act`` at a fixed rate with chunks from a server."""

    def __init__(self, remote: RemotePolicy, cfg: ClientConfig, *, fps: float | None = None) -> None:
        md = remote.metadata
        if cfg.actions_per_chunk > md.chunk_size:
            raise ValueError(f"actions_per_chunk={cfg.actions_per_chunk} > the policy's chunk_size={md.chunk_size}")
        self.remote = remote
        self.cfg = cfg
        self.fps = float(fps or md.fps)
        self.dt = 1.0 / (self.fps * cfg.time_scale)
        self.context_len = md.action_context_length if (md.uses_prefix and cfg.send_action_context) else 0
        self.queue = ActionQueue(cfg.aggregate_fn_name)
        self._lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._in_flight: tuple[int, float] | None = None  # (request_id, sent at monotonic)
        self._requests: queue_mod.SimpleQueue | None = None
        self._stream_ok = threading.Event()
        self._closing = False
        self._stats: EpisodeStats | None = None
        self._delay_est = 0.0  # EMA of the round trip, in control steps
        self._receiver: threading.Thread | None = None
        self.reconnects = 0

    # ------------------------------------------------------------------ stream

    def _open_stream(self) -> None:
        requests: queue_mod.SimpleQueue = queue_mod.SimpleQueue()

        def gen():  # noqa: ANN202
            while True:
                item = requests.get()
                if item is _CLOSE:
                    return
                yield item

        replies = self.remote.open_stream(gen())
        with self._lock:
            self._requests = requests
            self._in_flight = None
        self._stream_ok.set()
        self._receiver = threading.Thread(target=self._receive, args=(replies, requests), daemon=True)
        self._receiver.start()

    def _receive(self, replies: Any, requests: queue_mod.SimpleQueue) -> None:
        try:
            for reply in replies:
                self._on_reply(reply)
        except grpc.RpcError as e:
            if self._closing:
                return
            log.warning("stream broke (%s: %s); reconnecting", e.code().name, e.details())
        finally:
            self._stream_ok.clear()
            with self._lock:
                self._in_flight = None
        if self._closing:
            return
        requests.put(_CLOSE)
        self.reconnects += 1
        # Backoff + session re-open (the server may have restarted and lost it).
        for _ in range(3):
            episode = self.remote.episode_id
            try:
                self.remote.call_with_retry(lambda: self.remote.reset_session(self.remote.session_id, episode))
                self._open_stream()
                return
            except RemoteError as e:
                # start_episode may have moved the session on meanwhile: retry with the new id.
                if e.code == grpc.StatusCode.FAILED_PRECONDITION and self.remote.episode_id != episode:
                    continue
                log.error("could not reconnect to %s: %s", self.remote.address, e)
                return
            except Exception as e:  # noqa: BLE001 - give up; start_episode reopens the stream
                log.error("could not reconnect to %s: %s", self.remote.address, e)
                return

    def _on_reply(self, reply: pb.ChunkReply) -> None:
        now = time.monotonic()
        with self._lock:
            stats = self._stats
            if self._in_flight is not None and self._in_flight[0] == reply.request_id:
                rtt_ms = 1000 * (now - self._in_flight[1])
                self._in_flight = None
            else:
                rtt_ms = None
            if stats is None or reply.episode_id != stats.episode_id:
                if stats is not None:
                    stats.stale_episode_replies += 1
                return
            if reply.HasField("error") and reply.error.code != 0:
                stats.errors.append(f"{status_code(reply.error.code).name}: {reply.error.message}")
                return
            chunk = decode_tensor(reply.actions, name="actions")[: self.cfg.actions_per_chunk]
            self.queue.merge(chunk, reply.first_timestep)
            stats.chunks += 1
            if rtt_ms is not None:
                stats.rtt_ms.append(rtt_ms)
                steps = rtt_ms / 1000.0 / self.dt
                self._delay_est = steps if not stats.rtt_ms[:-1] else 0.8 * self._delay_est + 0.2 * steps
            tm = reply.timings
            stats.model_ms.append(tm.model_ms)
            stats.server_ms.append(tm.queue_wait_ms + tm.preprocess_ms + tm.model_ms + tm.postprocess_ms)
            stats.batch_sizes.append(tm.batch_size)

    # ------------------------------------------------------------------ episodes

    def start_episode(self) -> int:
        """New episode id on the server; queued actions and late replies of the old one are void."""
        self.remote.reset()
        self.remote.reset_session(self.remote.session_id, self.remote.episode_id)
        with self._lock:
            self.queue.reset()
            self._in_flight = None
            self._stats = EpisodeStats(episode_id=self.remote.episode_id)
        if self._receiver is None or not self._receiver.is_alive():
            self._open_stream()
        return self.remote.episode_id

    def run_episode(
        self,
        get_obs: Callable[[], dict[str, Any]],
        act: Callable[[np.ndarray, int], bool],
        idle_action: Callable[[], np.ndarray],
        max_steps: int,
        record: bool = False,
    ) -> EpisodeStats:
        """``act(action, step) -> done``; returns the episode's stats."""
        self.start_episode()
        stats = self._stats
        assert stats is not None
        t0 = time.monotonic()
        for k in range(max_steps):
            obs = get_obs()
            self._maybe_send(obs, k, stats)
            with self._lock:
                ta = self.queue.pop(now=k)
            if ta is None:
                action = idle_action()
                stats.stalls += 1
            else:
                action = ta.action
                if record:
                    stats.executed.append((ta.timestep, ta.action))
            stats.steps = k + 1
            if act(action, k):
                break
            sleep = t0 + (k + 1) * self.dt - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)
            else:
                stats.overruns += 1
        with self._lock:
            self._stats = None  # late replies of this episode are now discarded
        return stats

    def _maybe_send(self, obs: dict[str, Any], k: int, stats: EpisodeStats) -> None:
        with self._lock:
            if self._in_flight is not None:
                if time.monotonic() - self._in_flight[1] < self.cfg.request_timeout_s:
                    return
                stats.errors.append(f"request {self._in_flight[0]} unanswered after {self.cfg.request_timeout_s}s")
                self._in_flight = None  # give up on it; a late reply still merges (labels say where)
            if not self._stream_ok.is_set() or self._requests is None:
                return
            qlen = len(self.queue)
            if not should_send_observation(qlen, self.cfg.actions_per_chunk, self.cfg.chunk_size_threshold):
                return
            context = self.queue.peek(self.context_len) if self.context_len else None
            if context is not None and len(context) == 0:
                context = None
            rid = next(self._request_ids)
            req = encode_request(
                obs,
                session_id=self.remote.session_id,
                episode_id=stats.episode_id,
                timestep=k,
                action_context=context,
                estimated_delay=int(math.ceil(self._delay_est)),
                request_id=rid,
                must_go=qlen == 0,
            )
            self._in_flight = (rid, time.monotonic())
            stats.requests += 1
            stats.must_go += qlen == 0
            self._requests.put(req)

    def close(self) -> None:
        self._closing = True
        with self._lock:
            if self._requests is not None:
                self._requests.put(_CLOSE)
        if self._receiver is not None:
            self._receiver.join(timeout=2.0)


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}
