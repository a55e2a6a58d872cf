"""Wall-clock chunk execution against a PolicyServer (used by SimClient and RobotClient).

The control loop is the one of ``runtime/loop.py`` with the rules of ``ChunkController``
(the same code the virtual clock runs); only the transport and the clock differ:

* ``WallTicks`` ticks at ``fps * time_scale``;
* ``StreamTransport`` sends each request on the session's bidirectional stream; a
  receiver thread puts replies in an inbox, and the loop merges them at the first tick
  after they arrived. The delay a chunk had is therefore counted in control steps, like
  on the virtual clock, and recorded in the trace.

::

    tick       k        k+1   k+2        k+3 ...
    loop       obs_k sent  pop    pop  merge chunk(k) (labels k..k+H-1; k, k+1, k+2 stale), pop
    receiver               chunk(k) arrives -> inbox

Replies carry the episode id; after ``start_episode`` replies of older episodes are
discarded, so an old plan is never executed. If the stream breaks (server restart), the
receiver reconnects with exponential backoff and re-opens the session; the requests in
flight fail and the controller asks again. Round-trip times are measured on this
process's monotonic clock only.
"""

from __future__ import annotations

import logging
import math
import queue as queue_mod
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy, status_code
from chunkwise.runtime.loop import Arrival, WallTicks, run_loop
from chunkwise.runtime.virtual_clock import check_policy_fits
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import ChunkController, ChunkRequest, Rollout
from chunkwise.wire.codec import decode_tensor, encode_request

log = logging.getLogger(__name__)
_CLOSE = object()
_BROKEN = object()


@dataclass
class RemoteConfig:
    """How to reach a PolicyServer: ``--server=host:port --token=... --tls_root=ca.pem``."""

    address: str = "127.0.0.1:8080"
    token: str = ""  # sent as ``authorization: Bearer <token>``
    tls_root: str = ""  # PEM file of the CA that signed the server's certificate ("" = plaintext)
    time_scale: float = 1.0  # > 1 runs the control loop faster than real time (tests, validation)
    request_timeout_s: float = 5.0  # a request unanswered this long is given up and asked again
    connect_timeout_s: float = 5.0  # give up reaching the server after this long, naming it

    def __post_init__(self) -> None:
        if not self.address or ":" not in self.address:
            raise ValueError(f"server address must be host:port, got {self.address!r}")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"time_scale must be a positive number, got {self.time_scale}")
        for name in ("request_timeout_s", "connect_timeout_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")
        if self.tls_root and not Path(self.tls_root).is_file():
            raise ValueError(f"tls_root={self.tls_root!r} is not a file")

    def connect(self, session_id: str | None = None) -> RemotePolicy:
        root = Path(self.tls_root).read_bytes() if self.tls_root else None
        return RemotePolicy(
            self.address, session_id, token=self.token or None, root_certificates=root,
            connect_timeout_s=self.connect_timeout_s,
        )


class StreamTransport:
    """``runtime.loop.Transport`` over one server session stream (see module doc)."""

    def __init__(self, remote: RemotePolicy) -> None:
        self.remote = remote
        self.prefix_mode = getattr(remote, "prefix_mode", "")
        self._lock = threading.Lock()
        self._inbox: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        self._requests: queue_mod.SimpleQueue | None = None
        self._stream_ok = threading.Event()
        self._closing = False
        self._receiver: threading.Thread | None = None
        self._sent: dict[int, float] = {}  # request id -> monotonic send time
        self.episode_id = 0
        self.reconnects = 0
        self.stats: dict[str, Any] = {}

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
        self._stream_ok.set()
        self._receiver = threading.Thread(target=self._receive, args=(replies, requests), daemon=True)
        self._receiver.start()

    def _receive(self, replies: Any, requests: queue_mod.SimpleQueue) -> None:
        try:
            for reply in replies:
                self._inbox.put((reply, time.monotonic()))
        except grpc.RpcError as e:
            if self._closing:
                return
            log.warning("stream to %s broke (%s: %s); reconnecting", self.remote.address, e.code().name, e.details())
        finally:
            self._stream_ok.clear()
            self._inbox.put((_BROKEN, time.monotonic()))
        if self._closing:
            return
        requests.put(_CLOSE)
        self.reconnects += 1
        # Backoff + session re-open (the server may have restarted and lost it).
        for _ in range(3):
            episode = self.remote.episode_id
            try:
                self.remote.call_with_retry(lambda episode=episode: self.remote.reset_session(self.remote.session_id, episode))
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

    # ------------------------------------------------------------------ Transport
    def start_episode(self, seed: int) -> None:
        """New episode id on the server; late replies of the old one are void."""
        self.remote.reset()
        self.remote.reset_session(self.remote.session_id, self.remote.episode_id)
        self._new_episode(self.remote.episode_id)
        if self._receiver is None or not self._receiver.is_alive():
            self._open_stream()

    def _new_episode(self, episode_id: int) -> None:
        self.episode_id = episode_id
        self._sent.clear()
        self.stats = {
            "rtt_ms": [], "model_ms": [], "server_ms": [], "batch_sizes": [],
            "stale_episode_replies": 0, "server_errors": 0, "unsent": 0,
        }

    def known_delay(self) -> None:
        return None  # a real server's latency is only known once the chunk is back

    def send(self, request: ChunkRequest) -> None:
        p = request.prefix
        msg = encode_request(
            request.observation,
            session_id=self.remote.session_id,
            episode_id=self.episode_id,
            timestep=request.timestep,
            action_context=None if p is None else p.actions,
            estimated_delay=0 if p is None else p.delay,
            request_id=request.request_id,
            must_go=request.must_go,
            prefix_mode=self.prefix_mode,
        )
        self._sent[request.request_id] = time.monotonic()
        self._submit(request, msg)

    def _submit(self, request: ChunkRequest, msg: Any) -> None:
        """Put the encoded request on the wire (the only part a test transport replaces)."""
        with self._lock:
            requests = self._requests if self._stream_ok.is_set() else None
        if requests is None:
            self.stats["unsent"] += 1
            self._sent.pop(request.request_id, None)
            self._inbox.put((("unsent", request.request_id), time.monotonic()))
            return
        requests.put(msg)

    def poll(self, now: int) -> list[Arrival]:
        out: list[Arrival] = []
        while True:
            try:
                reply, t_recv = self._inbox.get_nowait()
            except queue_mod.Empty:
                return out
            if reply is _BROKEN:  # everything in flight is lost with the stream
                out.extend(Arrival(rid, None, "stream broke") for rid in self._sent)
                self._sent.clear()
                continue
            if isinstance(reply, tuple):  # ("unsent", request id)
                out.append(Arrival(reply[1], None, "stream down: request not sent"))
                continue
            if reply.episode_id != self.episode_id:
                self.stats["stale_episode_replies"] += 1
                continue
            t_sent = self._sent.pop(reply.request_id, None)
            if reply.HasField("error") and reply.error.code != 0:
                self.stats["server_errors"] += 1
                out.append(Arrival(reply.request_id, None, f"{status_code(reply.error.code).name}: {reply.error.message}"))
                continue
            if t_sent is not None:
                self.stats["rtt_ms"].append(1000 * (t_recv - t_sent))
            tm = reply.timings
            self.stats["model_ms"].append(tm.model_ms)
            self.stats["server_ms"].append(tm.queue_wait_ms + tm.preprocess_ms + tm.model_ms + tm.postprocess_ms)
            self.stats["batch_sizes"].append(tm.batch_size)
            out.append(Arrival(reply.request_id, decode_tensor(reply.actions, name="actions")))

    def close(self) -> None:
        self._closing = True
        with self._lock:
            if self._requests is not None:
                self._requests.put(_CLOSE)
        if self._receiver is not None:
            self._receiver.join(timeout=2.0)


class ChunkClient:
    """Runs episodes of ``observe -> act`` at a fixed rate with chunks from a server.

    ``remote`` is a ``RemotePolicy`` (or its ``with_prefix_mode`` view); ``execution`` is
    the same ``ExecutionConfig`` the virtual clock takes, with ``prefix_delay`` forced to
    "estimated" (a client cannot know a chunk's delay before it is back).
    """

    def __init__(
        self,
        remote: RemotePolicy,
        execution: ExecutionConfig,
        *,
        fps: float | None = None,
        time_scale: float = 1.0,
        request_timeout_s: float = 5.0,
        action_dim: int | None = None,
        transport: StreamTransport | None = None,
        clock: Any = None,
    ) -> None:
        """``transport`` / ``clock`` replace the server stream and the wall clock (tests)."""
        md = remote.metadata
        check_policy_fits(remote, execution, action_dim or md.action_dim)
        if execution.prefix_delay != "estimated":
            from dataclasses import replace

            execution = replace(execution, prefix_delay="estimated")
        self.remote = remote
        self.execution = execution
        self.fps = float(fps or md.fps)
        self.dt = 1.0 / (self.fps * time_scale)
        self.transport = transport or StreamTransport(remote)
        self._clock = clock
        self._idle: Callable[[], np.ndarray] = lambda: np.zeros(md.action_dim, dtype=np.float32)
        timeout_steps = max(1, int(math.ceil(request_timeout_s * self.fps * time_scale)))
        self.controller = ChunkController(
            execution, md.action_dim, lambda: self._idle(), prefix_length=md.prefix_length, timeout_steps=timeout_steps,
            # a local per-step hook (e.g. a correction head) runs here, in the client, on every observation
            step_hook=getattr(remote, "step_hook", None),
        )

    @property
    def reconnects(self) -> int:
        return self.transport.reconnects

    def run_episode(
        self,
        observe: Callable[[], dict[str, Any]],
        act: Callable[[np.ndarray], tuple[float, bool, bool]],
        idle_action: Callable[[], np.ndarray],
        max_steps: int,
        seed: int = 0,
    ) -> Rollout:
        """``act(action) -> (reward, success, done)``; returns the same record as the virtual clock."""
        self._idle = idle_action
        self.transport.start_episode(seed)
        self.controller.reset()
        clock = self._clock or WallTicks(self.dt)
        run_loop(self.controller, self.transport, observe, act, max_steps, clock)
        st = self.transport.stats
        return self.controller.rollout(
            seed,
            episode_id=self.transport.episode_id,
            rtt_ms=list(st["rtt_ms"]), model_ms=list(st["model_ms"]), server_ms=list(st["server_ms"]),
            batch_sizes=list(st["batch_sizes"]), stale_episode_replies=st["stale_episode_replies"],
            errors=list(self.controller.errors), overruns=getattr(clock, "overruns", 0),
            reconnects=self.transport.reconnects,
        )

    def close(self) -> None:
        self.transport.close()


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}
