"""``chunkwise bench soak``: many clients against a real server process, with chaos.

What runs, for ``--seconds``:

- ``--clients`` client threads, each one robot: it opens a connection and a ``Stream``,
  sends one observation every ``1/rate_hz`` s and waits for its chunk; every
  ``~disconnect_every_s`` (exponential) it leaves -- half the time closing the stream
  cleanly, half the time dropping the connection mid-stream -- and comes back with a new
  connection and the next episode of the same session.
- ``--frozen_clients`` client *processes* that stream, then get ``SIGSTOP``: their TCP
  connections stay open and silent (the server's keepalive must drop them), then ``SIGKILL``
  and a fresh one, all run long.
- at ``kill_at`` of the run the server gets ``kill -9`` and is restarted on the same port;
  clients reconnect on their own.
- a health prober checks the server every ``health_interval_s`` s (gRPC health, 2 s deadline).

Request ``j`` of client ``c`` in episode ``e`` at step ``t`` carries the state
``[t, c, j, e, 0...]``; the echo policy returns it in row 0 of the chunk, so each reply says
whose, which request and which episode it answers. Counted, per request:

  lost          the stream ended cleanly without answering it
  duplicated    a request id answered twice
  misdelivered  another client's or another request's data
  stale         an earlier episode's chunk delivered in a later one
  interrupted   failed with an error status while the server was down (killed): the
                client was told, nothing was executed
  errors        any other error status

Passes when lost = duplicated = misdelivered = stale = errors = 0, every health check
outside the restart window answered within 1 s, and the server's RSS grew < 5 % from the
end of warm-up to the end of each of its lifetimes.
"""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

from chunkwise.types import OBS_STATE

_CLOSE = object()


@dataclass
class SoakConfig:
    clients: int = 64
    seconds: float = 600.0
    rate_hz: float = 10.0  # observations per second per client (a robot asking for chunks)
    disconnect_every_s: float = 30.0  # mean time between one client's disconnects
    frozen_clients: int = 4  # client processes SIGSTOPped with their streams open
    freeze_s: float = 45.0  # how long each stays frozen before SIGKILL and a fresh one
    kill_at: float = 0.5  # the server is kill -9'd at this fraction of the run; < 0: never
    warmup_s: float = 30.0  # RSS baseline: this long after each server start
    health_interval_s: float = 0.25
    state_dim: int = 8
    max_streams: int = 128  # the server's --max_streams (clients + frozen ones must fit)
    keepalive_s: float = 20.0  # the server's --keepalive_s
    keepalive_timeout_s: float = 10.0
    seed: int = 0
    output: str = ""  # also write the result as JSON here
    progress: bool = True

    def __post_init__(self) -> None:
        if self.clients < 1 or self.seconds <= 0 or self.rate_hz <= 0:
            raise ValueError("--clients, --seconds and --rate_hz must be positive")
        if self.clients + self.frozen_clients > self.max_streams:
            raise ValueError(f"--clients + --frozen_clients = {self.clients + self.frozen_clients} streams "
                             f"exceed --max_streams={self.max_streams}")
        if self.kill_at >= 1:
            raise ValueError(f"--kill_at is a fraction of the run in [0, 1) (or < 0 for never), got {self.kill_at}")
        if self.state_dim < 4:
            raise ValueError("--state_dim must be >= 4 (the state carries step, client, request, episode)")


@dataclass
class SoakReport:
    clients: int
    seconds: float
    sent: int = 0
    ok_replies: int = 0
    lost: int = 0
    duplicated: int = 0
    misdelivered: int = 0
    stale: int = 0
    interrupted: int = 0
    errors: int = 0
    disconnects: int = 0
    reconnect_failures: int = 0
    error_messages: list[str] = field(default_factory=list)
    rtt_ms_p50: float = 0.0
    rtt_ms_p99: float = 0.0
    health_checks: int = 0
    health_max_s_outside_restart: float = 0.0
    health_slow_outside_restart: int = 0  # > 1 s or failed
    restart_down_s: float = 0.0  # kill -9 to healthy again
    resume_s_median: float = 0.0  # healthy again -> a client's next OK chunk
    resume_s_max: float = 0.0
    rss_mb: list[list[float]] = field(default_factory=list)  # per server lifetime: [after warm-up, at end]
    rss_growth_pct: list[float] = field(default_factory=list)
    rss_series: list[list[list[float]]] = field(default_factory=list)  # per lifetime: [s since start, MB] every ~10 s
    frozen_started: int = 0

    @property
    def ok(self) -> bool:
        return (self.ok_replies > 0 and not (self.lost or self.duplicated or self.misdelivered or self.stale
                                             or self.errors or self.health_slow_outside_restart)
                and all(g < 5.0 for g in self.rss_growth_pct))

    def summary(self) -> str:
        rss = ", ".join(f"{a:.0f}->{b:.0f} MB ({g:+.1f}%)" for (a, b), g in zip(self.rss_mb, self.rss_growth_pct))
        return (
            f"soak: {self.clients} clients x {self.seconds:.0f} s: sent={self.sent} ok={self.ok_replies} "
            f"lost={self.lost} duplicated={self.duplicated} misdelivered={self.misdelivered} stale={self.stale} "
            f"errors={self.errors} interrupted_by_kill={self.interrupted} disconnects={self.disconnects}\n"
            f"  rtt p50/p99 {self.rtt_ms_p50:.2f}/{self.rtt_ms_p99:.2f} ms; health: {self.health_checks} checks, "
            f"max {self.health_max_s_outside_restart * 1e3:.0f} ms outside the restart, "
            f"{self.health_slow_outside_restart} over 1 s; restart: down {self.restart_down_s:.1f} s, clients resumed "
            f"median {self.resume_s_median:.2f} s max {self.resume_s_max:.2f} s after healthy; "
            f"frozen clients {self.frozen_started}; server RSS {rss or 'n/a'}\n"
            f"soak ok: {self.ok}"
        )


class _Run:
    """Shared state of one soak: the server's address, its down window, the counters."""

    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.address = ""
        self.lock = threading.Lock()
        self.report = SoakReport(clients=cfg.clients, seconds=cfg.seconds)
        self.rtts: list[float] = []
        self.down_since: float | None = None  # the server is (being) killed
        self.healthy_again: float | None = None
        self.resumes: list[float] = []
        self.t_end = 0.0

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self.report, k, getattr(self.report, k) + v)

    def note(self, msg: str) -> None:
        with self.lock:
            if len(self.report.error_messages) < 20:
                self.report.error_messages.append(msg[:300])

    def server_down(self) -> bool:
        return self.down_since is not None and self.healthy_again is None


def _encode(sid: str, c: int, rid: int, episode: int, t: int, dim: int):  # noqa: ANN202
    from chunkwise.wire.codec import encode_request

    state = np.zeros(dim, np.float32)
    state[:4] = (t, c, rid, episode)
    return encode_request({OBS_STATE: state, "task": "soak"}, session_id=sid, episode_id=episode, timestep=t,
                          request_id=rid)


def _client(run: _Run, c: int) -> None:
    from chunkwise.clients.remote_policy import RemotePolicy, RemoteError
    from chunkwise.wire.codec import decode_tensor

    cfg = run.cfg
    rng = np.random.default_rng(cfg.seed * 1000 + c)
    sid = f"soak-{c}"
    rid, episode = 0, 0
    seen: set[int] = set()
    period = 1.0 / cfg.rate_hz
    time.sleep(rng.uniform(0, period))
    waiting_since_restart = False
    while time.monotonic() < run.t_end:
        episode += 1
        seg_end = min(run.t_end, time.monotonic() + rng.exponential(cfg.disconnect_every_s))
        try:
            remote = RemotePolicy(run.address, session_id=sid, connect_timeout_s=30, reconnect_timeout_s=30)
        except (ConnectionError, RemoteError) as e:
            run.add(reconnect_failures=1)
            run.note(f"client {c} connect: {e}")
            time.sleep(0.2)
            continue
        requests: queue_mod.SimpleQueue = queue_mod.SimpleQueue()

        def gen(q: queue_mod.SimpleQueue = requests):  # noqa: ANN202
            while (item := q.get()) is not _CLOSE:
                yield item

        inflight: int | None = None
        try:
            remote.reset_session(sid, episode)
            replies = remote.stub.Stream(gen(), metadata=remote.call_metadata,
                                         timeout=max(seg_end - time.monotonic(), 0) + 60)
            t, next_at = 0, time.monotonic()
            while time.monotonic() < seg_end:
                rid += 1
                t += 1
                requests.put(_encode(sid, c, rid, episode, t, cfg.state_dim))
                inflight, sent_at = rid, time.monotonic()
                run.add(sent=1)
                reply = next(replies, None)
                if reply is None:  # the stream ended cleanly with our request unanswered
                    run.add(lost=1)
                    inflight = None
                    break
                inflight = None
                if reply.request_id in seen:
                    run.add(duplicated=1)
                    continue
                seen.add(reply.request_id)
                if reply.error.code != 0:
                    if run.server_down():
                        run.add(interrupted=1)
                    else:
                        run.add(errors=1)
                        run.note(f"client {c}: status {reply.error.code}: {reply.error.message}")
                    continue
                a = decode_tensor(reply.actions)
                if reply.request_id != rid or a[0, 1] != c or a[0, 2] != rid or reply.session_id != sid:
                    run.add(misdelivered=1)
                elif a[0, 3] != episode or reply.first_timestep != t:
                    run.add(stale=1)
                else:
                    now = time.monotonic()
                    run.add(ok_replies=1)
                    with run.lock:
                        run.rtts.append(now - sent_at)
                        if waiting_since_restart and run.healthy_again is not None:
                            run.resumes.append(now - run.healthy_again)
                            waiting_since_restart = False
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
            run.add(disconnects=1)
            if rng.random() < 0.5:
                requests.put(_CLOSE)  # clean: the stream ends, nothing is left unanswered
                for _ in replies:
                    pass
        except (grpc.RpcError, RemoteError) as e:
            code = e.code() if isinstance(e, grpc.RpcError) else e.code
            if run.down_since is not None and (run.healthy_again is None or time.monotonic() - run.healthy_again < 5):
                run.add(interrupted=int(inflight is not None))
                waiting_since_restart = True
            else:
                run.add(errors=1)
                run.note(f"client {c}: stream: {code}: {e}")
        finally:
            requests.put(_CLOSE)
            remote.close()


_FROZEN = """
import sys, time, numpy as np
from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.serving.chaos import _encode
import queue
r = RemotePolicy(sys.argv[1], session_id=sys.argv[2], connect_timeout_s=30)
r.reset_session(r.session_id, 1)
q = queue.SimpleQueue()
def gen():
    while True:
        yield q.get()
replies = r.stub.Stream(gen())
for t in range(1, 10 ** 9):
    q.put(_encode(r.session_id, 10 ** 6, t, 1, t, int(sys.argv[3])))
    next(replies)
    time.sleep(0.1)
"""


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_soak(cfg: SoakConfig) -> SoakReport:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from chunkwise.serving.process import ServerProcess

    run = _Run(cfg)
    flags = ["--policy.type=echo", f"--policy.state_dim={cfg.state_dim}", f"--max_streams={cfg.max_streams}",
             f"--keepalive_s={cfg.keepalive_s}", f"--keepalive_timeout_s={cfg.keepalive_timeout_s}"]
    lifetime = cfg.seconds + 300
    srv = ServerProcess(flags, lifetime_s=lifetime).start()
    run.address = srv.address
    t0 = time.monotonic()
    run.t_end = t0 + cfg.seconds
    lifetimes: list[tuple[float, list[tuple[float, float]]]] = [(t0, [])]  # start, [(t, rss)]
    stop = threading.Event()

    def health() -> None:
        ch = grpc.insecure_channel(run.address)
        stub = health_pb2_grpc.HealthStub(ch)
        while not stop.is_set():
            t = time.monotonic()
            try:
                stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                took, failed = time.monotonic() - t, False
            except grpc.RpcError:
                took, failed = time.monotonic() - t, True
            # outside the restart window: from the kill until healthy + 1 s (the channel reconnects)
            in_window = run.down_since is not None and run.down_since - 0.1 <= t and (
                run.healthy_again is None or t < run.healthy_again + 1.0)
            with run.lock:
                run.report.health_checks += 1
                if not in_window:
                    run.report.health_max_s_outside_restart = max(run.report.health_max_s_outside_restart, took)
                    if failed or took > 1.0:
                        run.report.health_slow_outside_restart += 1
            stop.wait(max(0.0, cfg.health_interval_s - (time.monotonic() - t)))
        ch.close()

    threads = [threading.Thread(target=_client, args=(run, c), daemon=True) for c in range(cfg.clients)]
    threads.append(threading.Thread(target=health, daemon=True))
    for th in threads:
        th.start()
    frozen: list[tuple[subprocess.Popen, float]] = []  # (process, when it was frozen or 0)

    def start_frozen(k: int) -> subprocess.Popen:
        run.report.frozen_started += 1
        sid = f"frozen-{k}-{run.report.frozen_started}"
        return subprocess.Popen([sys.executable, "-c", _FROZEN, run.address, sid, str(cfg.state_dim)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    kill_time = t0 + cfg.kill_at * cfg.seconds if cfg.kill_at >= 0 else None
    last_print = t0
    try:
        for k in range(cfg.frozen_clients):
            frozen.append((start_frozen(k), time.monotonic() + 5.0))  # frozen 5 s after it starts
        while (now := time.monotonic()) < run.t_end:
            rss = _rss_mb(srv.proc.pid) if srv.proc is not None else None
            if rss is not None:
                lifetimes[-1][1].append((now, rss))
            for k, (p, at) in enumerate(frozen):
                if at > 0 and now >= at and p.poll() is None:
                    p.send_signal(signal.SIGSTOP)
                    frozen[k] = (p, -(now + cfg.freeze_s))  # negative: frozen until -at
                elif at < 0 and now >= -at:
                    p.kill()
                    p.wait()
                    frozen[k] = (start_frozen(k), now + 5.0)
            if kill_time is not None and now >= kill_time:
                kill_time = None
                run.down_since = time.monotonic()
                assert srv.proc is not None
                srv.proc.kill()  # kill -9
                srv.proc.wait()
                port = srv.port
                srv = ServerProcess([*flags, f"--port={port}"], lifetime_s=lifetime).start()
                run.healthy_again = time.monotonic()
                run.report.restart_down_s = run.healthy_again - run.down_since
                lifetimes.append((run.healthy_again, []))
            if cfg.progress and now - last_print >= 30:
                last_print = now
                r = run.report
                print(f"  {now - t0:5.0f}/{cfg.seconds:.0f} s: ok={r.ok_replies} lost={r.lost} errors={r.errors} "
                      f"interrupted={r.interrupted} health checks={r.health_checks}", file=sys.stderr, flush=True)
            time.sleep(1.0)
        for th in threads[:-1]:
            th.join(timeout=90)
    finally:
        stop.set()
        for p, _ in frozen:
            if p.poll() is None:
                p.kill()
                p.wait()
        srv.stop()
    rep = run.report
    rep.seconds = time.monotonic() - t0
    if run.rtts:
        rep.rtt_ms_p50 = float(np.percentile(run.rtts, 50) * 1e3)
        rep.rtt_ms_p99 = float(np.percentile(run.rtts, 99) * 1e3)
    if run.resumes:
        rep.resume_s_median = float(np.median(run.resumes))
        rep.resume_s_max = float(np.max(run.resumes))
    for start, samples in lifetimes:
        after = [r for t, r in samples if t >= start + cfg.warmup_s]
        rep.rss_series.append([[round(t - start, 1), round(r, 2)] for t, r in samples[::10]])
        if len(after) >= 2:
            rep.rss_mb.append([after[0], after[-1]])
            rep.rss_growth_pct.append(100.0 * (after[-1] - after[0]) / after[0])
    if cfg.output:
        from chunkwise.common.files import atomic_write_json

        atomic_write_json(Path(cfg.output), {"config": asdict(cfg), "result": asdict(rep), "ok": rep.ok})
    return rep


def main(argv: list[str]) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(SoakConfig, argv, "bench soak")
    except CLIError:
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rep = run_soak(cfg)
    print(rep.summary())
    for m in rep.error_messages[:10]:
        print("   ", m)
    return 0 if rep.ok else 1
