"""PolicyServer behaviour: action context, batching, backpressure, deadlines, auth, TLS."""

import subprocess
import threading

import numpy as np
import pytest

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy
from chunkwise.policies.testing import EchoPolicy, TestPolicyConfig
from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server
from chunkwise.serving.soak import run_soak
from chunkwise.types import Prefix, stack_observations

from .conftest import state_obs


def test_action_context_reaches_the_policy_unchanged(echo_server):
    """Through a real server process: the echo policy copies the context into the chunk."""
    rng = np.random.default_rng(0)
    ctx = rng.standard_normal((5, 4)).astype(np.float32) * 1e3
    with RemotePolicy(echo_server.address) as rp:
        out = rp.predict_chunk(stack_observations([state_obs(7.0)]), [Prefix(ctx, delay=2)])
        assert out[0, :5].tobytes() == ctx.tobytes()  # bit exact
        assert out[0, 5, 0] == 7.0 + 5  # rest of the chunk: the policy's own plan
        # batch of two, one with and one without context
        two = stack_observations([state_obs(1.0), state_obs(2.0)])
        out = rp.predict_chunk(two, [None, Prefix(ctx[:3], delay=0)])
        assert out[0, 0, 0] == 1.0 and out[1, :3].tobytes() == ctx[:3].tobytes()


def _in_process(policy, **cfg):
    cfg = ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, **cfg)
    return start_server(cfg, policy=policy)


def test_in_process_server_records_prefix_and_batches_concurrent_sessions():
    policy = EchoPolicy(TestPolicyConfig(prefix_length=5, model_ms=30))
    srv = _in_process(policy, max_batch_size=8, max_wait_ms=20)
    try:
        addr = f"127.0.0.1:{srv.port}"
        ctx = np.arange(20, dtype=np.float32).reshape(5, 4)
        remotes = [RemotePolicy(addr, session_id=f"s{i}") for i in range(8)]
        for r in remotes:
            r.ensure_session(r.session_id)
        outs = [None] * 8
        barrier = threading.Barrier(8)

        def go(i):
            barrier.wait()
            outs[i] = remotes[i].predict_chunk(stack_observations([state_obs(float(i))]), [Prefix(ctx, delay=i % 3)])

        threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        for i, o in enumerate(outs):
            assert o is not None and o[0, 5, 0] == i + 5  # each session got its own chunk
        got = [p for p in policy.received_prefixes if p is not None]
        assert len(got) == 8 and all(np.array_equal(p.actions, ctx) for p in got)
        assert sorted(p.delay for p in got) == sorted(i % 3 for i in range(8))
        assert max(policy.batch_sizes) > 1, policy.batch_sizes  # dynamic batching happened
        for r in remotes:
            r.close()
    finally:
        srv.stop()


def test_backpressure_and_deadlines_give_statuses_not_silent_drops():
    policy = EchoPolicy(TestPolicyConfig(model_ms=300))
    srv = _in_process(policy, max_batch_size=1, max_queue=2, request_timeout_s=0.5)
    try:
        addr = f"127.0.0.1:{srv.port}"
        results: list[str] = []
        lock = threading.Lock()

        def go(i):
            with RemotePolicy(addr, session_id=f"bp{i}") as rp:
                try:
                    rp.predict_chunk(stack_observations([state_obs(1.0)]))
                    r = "OK"
                except RemoteError as e:
                    r = e.code.name
            with lock:
                results.append(r)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 8  # every request got an answer
        assert "OK" in results
        assert "RESOURCE_EXHAUSTED" in results or "DEADLINE_EXCEEDED" in results, results
        assert set(results) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, results
    finally:
        srv.stop()


def test_token_required_off_loopback_and_enforced():
    with pytest.raises(ValueError, match="without a token"):
        ServeConfig(policy=ServePolicyConfig(type="echo"), host="0.0.0.0")
    with pytest.raises(ValueError, match="exactly one of --policy.path"):
        ServeConfig()
    with pytest.raises(ValueError, match="choose one of"):
        ServePolicyConfig(type="nope")  # type: ignore[arg-type]
    srv = _in_process(EchoPolicy(), token="s3cret")
    try:
        addr = f"127.0.0.1:{srv.port}"
        with pytest.raises(ConnectionError, match="refused the token.*--token"):
            RemotePolicy(addr, reconnect_timeout_s=1)
        with pytest.raises(ConnectionError, match="refused the token"):
            RemotePolicy(addr, token="wrong", reconnect_timeout_s=1)
        with RemotePolicy(addr, token="s3cret") as rp:
            assert rp.predict_chunk(stack_observations([state_obs(2.0)]))[0, 0, 0] == 2.0
    finally:
        srv.stop()


def test_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        capture_output=True,
    )
    if r.returncode != 0:
        pytest.skip(f"openssl unavailable: {r.stderr[:200]!r}")
    cfg = ServeConfig(policy=ServePolicyConfig(type="echo"), host="localhost", port=0,
                      tls_cert=str(cert), tls_key=str(key))
    srv = start_server(cfg, policy=EchoPolicy())
    try:
        with RemotePolicy(f"localhost:{srv.port}", root_certificates=cert.read_bytes()) as rp:
            assert rp.predict_chunk(stack_observations([state_obs(4.0)]))[0, 0, 0] == 4.0
        with pytest.raises(ConnectionError, match="tls_root"):  # plaintext client against a TLS server
            RemotePolicy(f"localhost:{srv.port}", connect_timeout_s=0.5)
    finally:
        srv.stop()


def test_32_concurrent_clients_no_lost_duplicated_or_misdelivered_chunks(echo_server):
    """Short version of `chunkwise bench serve --soak_seconds=60` (see docs/serving.md)."""
    res = run_soak(echo_server.address, n_clients=32, seconds=4.0)
    assert res.ok, res.summary() + " " + str(res.error_messages)
    assert res.received == res.sent > 32 * 4
    assert max(res.batch_sizes) > 1, res.batch_sizes
