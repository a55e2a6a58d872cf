"""Threads, streams and deadlines: no client can starve the others.

Each test reproduces an attack on `chunkwise serve` that used to work: idle streams taking
every handler thread, a frozen client holding its streams forever, request deadlines that
did not count the wait for a thread, a queue limit that could never be reached.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy, make_channel
from chunkwise.policies.testing import EchoPolicy, TestPolicyConfig
from chunkwise.serving.limits import ConnectionTracker, Limits
from chunkwise.serving.process import ServerProcess
from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server
from chunkwise.types import stack_observations
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import encode_request

from .conftest import state_obs


def _in_process(policy=None, **cfg):
    cfg = ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, **cfg)
    return start_server(cfg, policy=policy or EchoPolicy())


def _others_are_served(address: str, budget_s: float = 3.0, streams_full: bool = False) -> None:
    """Health, GetMetadata, Reset, Infer and a Stream of another client all answer (when
    every stream slot is taken, a new stream is refused at once instead)."""
    t0 = time.monotonic()
    with grpc.insecure_channel(address) as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=budget_s)
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.PolicyServiceStub(ch)
        assert stub.GetMetadata(pb.MetadataRequest(), timeout=budget_s).protocol_version == 2
        stub.Reset(pb.ResetRequest(session_id="other", episode_id=0), timeout=budget_s)
    with RemotePolicy(address, session_id="other-client", connect_timeout_s=budget_s, timeout_s=budget_s) as rp:
        assert rp.predict_chunk(stack_observations([state_obs(5.0)]))[0, 0, 0] == 5.0
        rp.ensure_session("other-stream")
        reqs = [encode_request(state_obs(6.0), session_id="other-stream", episode_id=0, timestep=1)]
        if streams_full:
            with pytest.raises(grpc.RpcError) as ei:
                list(rp.stub.Stream(iter(reqs), timeout=budget_s))
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
        else:
            replies = list(rp.stub.Stream(iter(reqs), timeout=budget_s))
            assert replies[0].error.code == 0 and replies[0].first_timestep == 1
    assert time.monotonic() - t0 < budget_s


def _open_idle_streams(channel: grpc.Channel, n: int, stop: threading.Event) -> list:
    stub = pb_grpc.PolicyServiceStub(channel)

    def never():  # a request iterator that never yields
        stop.wait(60)
        return
        yield

    return [stub.Stream(never()) for _ in range(n)]


def _wait_done(calls, n: int, timeout_s: float) -> list:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        done = [c for c in calls if c.done()]
        if len(done) >= n:
            return done
        time.sleep(0.05)
    return [c for c in calls if c.done()]


def test_idle_streams_cannot_starve_the_server():
    """100 streams from one client that never send, then 8 more connections with 16
    each: the caps refuse the excess at once, everyone else is served meanwhile, and the
    idle streams are closed after --stream_idle_timeout_s (default limits otherwise)."""
    stop = threading.Event()
    with ServerProcess(["--policy.type=echo", "--stream_idle_timeout_s=3"], lifetime_s=60) as srv:
        ch = make_channel(srv.address)
        try:
            calls = _open_idle_streams(ch, 100, stop)
            refused = _wait_done(calls, 84, 5.0)
            assert len(refused) == 84  # per connection: 16 stay open
            assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert "max_streams_per_connection=16" in refused[0].details()
            _others_are_served(srv.address)
            # 8 more connections x 16 streams: the global cap (64) refuses 64 of the 128
            more = [make_channel(srv.address) for _ in range(8)]
            calls2 = [c for m in more for c in _open_idle_streams(m, 16, stop)]
            refused2 = _wait_done(calls2, 80, 5.0)
            assert len(refused2) == 80 and "max_streams=64" in refused2[-1].details()
            _others_are_served(srv.address, streams_full=True)  # unary calls and health still work
            # ... and the idle ones are closed by the server, with a status that says why
            closed = _wait_done(calls + calls2, 228, 10.0)
            assert len(closed) == 228
            idle = [c for c in calls + calls2 if c.code() == grpc.StatusCode.UNAVAILABLE]
            assert len(idle) == 64 and "no message for 3 s" in idle[0].details()
            _others_are_served(srv.address)
            for m in more:
                m.close()
        finally:
            stop.set()
            ch.close()


_FROZEN_CLIENT = textwrap.dedent("""
    import sys, threading, queue
    from chunkwise.clients.remote_policy import RemotePolicy
    from chunkwise.wire.codec import encode_request
    import numpy as np
    rp = RemotePolicy(sys.argv[1], session_id="frozen")
    rp.ensure_session("frozen")
    calls = []
    for i in range(4):
        q = queue.SimpleQueue()
        replies = rp.open_stream(iter(q.get, None))
        q.put(encode_request({"observation.state": np.zeros(8, np.float32), "task": "t"},
                             session_id="frozen", episode_id=0, timestep=i + 1))
        next(replies)
        calls.append((q, replies))
    print("ready", flush=True)
    threading.Event().wait()
""")


def test_a_frozen_client_is_dropped_by_keepalive():
    """A client process that opened streams and was then stopped (SIGSTOP: its kernel
    still ACKs TCP, its gRPC never answers a ping) loses its streams after
    keepalive_s + keepalive_timeout_s, long before the idle timeout."""
    srv = _in_process(keepalive_s=0.5, keepalive_timeout_s=0.5, stream_idle_timeout_s=60)
    proc = subprocess.Popen([sys.executable, "-c", _FROZEN_CLIENT, f"127.0.0.1:{srv.port}"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        conns = srv.service.connections
        assert conns.open_streams() == 4
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        while conns.open_streams() and time.monotonic() - t0 < 15:
            time.sleep(0.1)
        assert conns.open_streams() == 0, "the frozen client still holds its streams"
        assert time.monotonic() - t0 < 15
        _others_are_served(f"127.0.0.1:{srv.port}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(10)
        srv.stop()


def test_deadline_counts_the_wait_for_a_handler_thread():
    """With 2 model-pool threads and a 300 ms model, 8 concurrent calls mostly wait for a
    thread. The 0.6 s request timeout runs from arrival: no call takes much longer than
    that (before, a call that waited for a thread got a fresh deadline and all 8 ran
    one after another, the last after ~2.4 s)."""
    srv = _in_process(EchoPolicy(TestPolicyConfig(model_ms=300)), max_batch_size=1, max_streams=1,
                      max_workers=2, request_timeout_s=0.6)
    try:
        addr = f"127.0.0.1:{srv.port}"
        remotes = [RemotePolicy(addr, session_id=f"dl{i}", reconnect_timeout_s=0.1) for i in range(8)]
        for r in remotes:
            r.ensure_session(r.session_id)
        out: list[tuple[str, float, str]] = []
        barrier = threading.Barrier(8)

        def go(rp):
            barrier.wait()
            t0 = time.monotonic()
            try:
                rp.predict_chunk(stack_observations([state_obs(1.0)]))
                r, msg = "OK", ""
            except RemoteError as e:
                r, msg = e.code.name, e.message
            out.append((r, time.monotonic() - t0, msg))

        threads = [threading.Thread(target=go, args=(r,)) for r in remotes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        codes = [c for c, _, _ in out]
        assert len(out) == 8 and "OK" in codes and "DEADLINE_EXCEEDED" in codes, out
        assert max(dt for _, dt, _ in out) < 0.6 + 0.3 + 0.6, out  # timeout + one model call + slack
        assert any("after it arrived" in m for c, _, m in out if c == "DEADLINE_EXCEEDED"), out
        for r in remotes:
            r.close()
    finally:
        srv.stop()


def test_max_queue_can_fill():
    """Threads are sized so that max_queue is reachable: with 4 queue slots, 16
    concurrent calls on a slow model get RESOURCE_EXHAUSTED (queue full) at once."""
    srv = _in_process(EchoPolicy(TestPolicyConfig(model_ms=200)), max_batch_size=1, max_queue=4, max_streams=4,
                      request_timeout_s=5)
    assert srv.service.limits.workers == 4 + 4 + 8
    try:
        addr = f"127.0.0.1:{srv.port}"
        remotes = [RemotePolicy(addr, session_id=f"q{i}") for i in range(16)]
        for r in remotes:
            r.ensure_session(r.session_id)
        out: list[str] = []
        barrier = threading.Barrier(16)

        def go(rp):
            barrier.wait()
            try:
                rp.predict_chunk(stack_observations([state_obs(1.0)]))
                out.append("OK")
            except RemoteError as e:
                out.append(e.code.name + (" full" if "queue is full" in e.message else ""))

        threads = [threading.Thread(target=go, args=(r,)) for r in remotes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(out) == 16 and "OK" in out and "RESOURCE_EXHAUSTED full" in out, out
        for r in remotes:
            r.close()
    finally:
        srv.stop()


def test_worker_and_stream_limits_are_consistent():
    with pytest.raises(ValueError, match="must exceed max_streams"):
        Limits(max_streams=64, max_workers=64)
    assert Limits().workers == 64 + 64 + 8
    with pytest.raises(ValueError, match="max_inflight_bytes"):
        Limits(max_message_bytes=1 << 20, max_inflight_bytes=1 << 10)


def test_stream_tracker_closes_idle_and_stuck_streams():
    class Ctx:
        def __init__(self):
            self.cancelled = False

        def cancel(self):
            self.cancelled = True

    tr = ConnectionTracker(max_streams=3, max_streams_per_connection=2, idle_timeout_s=1.0, stuck_after_s=5.0)
    a, b, c = Ctx(), Ctx(), Ctx()
    sa = tr.open_stream("ipv4:1.1.1.1:1", a)
    sb = tr.open_stream("ipv4:1.1.1.1:1", b)
    with pytest.raises(Exception, match="max_streams_per_connection=2"):
        tr.open_stream("ipv4:1.1.1.1:1", Ctx())
    sc = tr.open_stream("ipv4:2.2.2.2:1", c)
    with pytest.raises(Exception, match="max_streams=3"):
        tr.open_stream("ipv4:3.3.3.3:1", Ctx())
    assert tr.busy("ipv4:1.1.1.1:1") and not tr.busy("ipv4:9.9.9.9:1")
    sb.busy = True  # answering a message: not idle ...
    now = time.monotonic()
    assert tr.sweep(now + 2.0) == 2 and a.cancelled and c.cancelled and not b.cancelled
    assert tr.sweep(now + 7.0) == 1 and b.cancelled  # ... unless its reply is never taken
    for s in (sa, sb, sc):
        tr.close_stream(s)
    assert tr.open_streams() == 0 and not tr.busy("ipv4:1.1.1.1:1")
