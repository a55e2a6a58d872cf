"""Credentials, failed-auth limits and session ownership."""

import time

import grpc
import numpy as np
import pytest

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy
from chunkwise.policies.testing import EchoPolicy
from chunkwise.serving.server import (
    TOKEN_ENV,
    ServeConfig,
    ServePolicyConfig,
    main,
    parse_serve_config,
    security_warnings,
    start_server,
)
from chunkwise.serving.sessions import Owner, ServingError, SessionTable
from chunkwise.types import stack_observations
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import encode_request

from .conftest import state_obs

TOKEN_A = "token-a-0123456789abcdef"
TOKEN_B = "token-b-0123456789abcdef"


# ---------------------------------------------------------------- tokens are read verbatim


@pytest.mark.parametrize("token", ["0123", "0x1F", "yes", "12:30", "@x", "*alias", "null", "[a,b]", "{x:1}",
                                   "'quoted'", "-", "~", "1e3", "!!python/object"])
def test_token_flag_is_verbatim(token):
    """draccus used to parse --token as YAML: 0123 -> 83, 0x1F -> 31, yes -> True,
    12:30 -> 750, and @x / *alias crashed with a YAML traceback."""
    for argv in (["--policy.type=echo", f"--token={token}"], ["--policy.type=echo", "--token", token]):
        cfg = parse_serve_config(argv, environ={})
        assert cfg.token == token and isinstance(cfg.token, str)
    cfg = parse_serve_config(["--policy.type=echo"], environ={TOKEN_ENV: token})
    assert cfg.token == token


def test_host_in_brackets_and_token_file(tmp_path):
    assert parse_serve_config(["--policy.type=echo", "--host=[::1]"], environ={}).host == "::1"
    f = tmp_path / "tokens"
    f.write_text(f"# robots\n{TOKEN_A}\n\n{TOKEN_B}\n")
    cfg = parse_serve_config(["--policy.type=echo", "--host=0.0.0.0", f"--token_file={f}"], environ={})
    assert cfg.tokens() == [TOKEN_A, TOKEN_B]
    assert cfg.credentials() == {f"Bearer {TOKEN_A}": "token#1", f"Bearer {TOKEN_B}": "token#2"}
    with pytest.raises(ValueError, match="not both"):
        parse_serve_config(["--policy.type=echo", "--token=x", f"--token_file={f}"], environ={})


def test_short_tokens_refused_off_loopback_and_warnings():
    with pytest.raises(ValueError, match="shorter than 16"):
        parse_serve_config(["--policy.type=echo", "--host=0.0.0.0", "--token=0123-secret"], environ={})
    with pytest.raises(ValueError, match="without a token"):
        parse_serve_config(["--policy.type=echo", "--host=0.0.0.0"], environ={})
    with pytest.raises(ValueError, match="printable ASCII"):
        parse_serve_config(["--policy.type=echo", "--token=has space"], environ={})
    assert parse_serve_config(["--policy.type=echo", "--token=short"], environ={}).token == "short"  # loopback
    cfg = parse_serve_config(["--policy.type=echo", "--host=0.0.0.0"], environ={TOKEN_ENV: TOKEN_A})
    warnings = security_warnings(cfg, [])
    assert len(warnings) == 1 and "without TLS" in warnings[0] and "clear text" in warnings[0]
    argv = ["--policy.type=echo", f"--token={TOKEN_A}"]
    assert "visible to every local user" in security_warnings(parse_serve_config(argv, environ={}), argv)[0]


@pytest.mark.parametrize("flag", ["--token=@x", "--host=[::1]", "--policy.path=*alias", "--host=0.0.0.0"])
def test_cli_errors_are_one_line(flag, capsys):
    """No YAML traceback for any of these (the last is refused: no token off loopback)."""
    argv = ["--policy.type=echo", flag] if not flag.startswith("--policy.path") else [flag]
    if flag in ("--token=@x", "--host=[::1]"):
        argv.append("--port=-1")  # valid flags, but stop before serving
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chunkwise serve: error: ") and "Traceback" not in err and err.count("\n") == 1, err


# ---------------------------------------------------------------- failed attempts


def _server(**cfg):
    return start_server(ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, **cfg), policy=EchoPolicy())


def test_failed_token_attempts_are_rate_limited():
    srv = _server(token=TOKEN_A, max_auth_failures_per_minute=60)  # 60 tries, then 1 per second
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            stub = pb_grpc.PolicyServiceStub(ch)

            def metadata(token):
                return stub.GetMetadata(pb.MetadataRequest(), timeout=5,
                                        metadata=(("authorization", f"Bearer {token}"),))

            details = []
            for i in range(61):
                with pytest.raises(grpc.RpcError) as ei:
                    metadata(f"guess-{i}")
                assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
                details.append(ei.value.details())
            assert all("wrong token" in d for d in details[:60]) and "too many failed" in details[60]
            with pytest.raises(grpc.RpcError) as ei:  # locked: even the right token is refused
                metadata(TOKEN_A)
            assert "too many failed" in ei.value.details()
            time.sleep(1.2)
            assert metadata(TOKEN_A).protocol_version == 2
            # health stays open without a token
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    finally:
        srv.stop()


# ---------------------------------------------------------------- session ownership


def test_sessions_belong_to_their_credential(tmp_path):
    f = tmp_path / "tokens"
    f.write_text(f"{TOKEN_A}\n{TOKEN_B}\n")
    srv = _server(token_file=str(f))
    addr = f"127.0.0.1:{srv.port}"
    try:
        with RemotePolicy(addr, session_id="robot-a", token=TOKEN_A) as a, \
                RemotePolicy(addr, session_id="robot-a", token=TOKEN_B) as b:
            assert a.predict_chunk(stack_observations([state_obs(1.0)]))[0, 0, 0] == 1.0
            with pytest.raises(RemoteError) as ei:  # Reset someone else's session to a far-future episode
                b.reset_session("robot-a", 10**15)
            assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED and "belongs to another client" in ei.value.message
            req = encode_request(state_obs(2.0), session_id="robot-a", episode_id=0, timestep=99)
            with pytest.raises(grpc.RpcError) as ei2:
                b.stub.Infer(req, timeout=5, metadata=b.call_metadata)
            assert ei2.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert a.predict_chunk(stack_observations([state_obs(3.0)]))[0, 0, 0] == 3.0  # unaffected
    finally:
        srv.stop()


def test_a_streaming_session_cannot_be_taken_over_by_another_connection():
    """Same credential (loopback, no token), another connection: refused while the
    owner's stream is open and recent; allowed once it closed (a reconnect)."""
    import queue

    srv = _server(session_takeover_s=30)
    addr = f"127.0.0.1:{srv.port}"
    try:
        owner = RemotePolicy(addr, session_id="arm")
        owner.ensure_session("arm")
        q: queue.SimpleQueue = queue.SimpleQueue()
        replies = owner.open_stream(iter(q.get, None))
        q.put(encode_request(state_obs(1.0), session_id="arm", episode_id=0, timestep=1))
        assert next(replies).error.code == 0
        with RemotePolicy(addr, session_id="arm", reconnect_timeout_s=0.5) as thief:
            with pytest.raises(RemoteError) as ei:
                thief.reset_session("arm", 10**15)
            assert ei.value.code == grpc.StatusCode.ABORTED and "in use by another open connection" in ei.value.message
            q.put(None)  # the owner's stream ends (e.g. it reconnects) ...
            list(replies)
            owner.close()
            t_end = time.monotonic() + 5
            while srv.service.connections.open_streams() and time.monotonic() < t_end:
                time.sleep(0.05)
            thief.reset_session("arm", 1)  # ... now a new connection may take the session over
            thief.episode_id = 1
            assert thief.predict_chunk(stack_observations([state_obs(4.0)]))[0, 0, 0] == 4.0
    finally:
        srv.stop()


def test_session_caps_per_connection_and_credential():
    a1 = Owner("token#1", "ipv4:10.0.0.1", "ipv4:10.0.0.1:1000")
    a2 = Owner("token#1", "ipv4:10.0.0.1", "ipv4:10.0.0.1:1001")
    b = Owner("token#2", "ipv4:10.0.0.2", "ipv4:10.0.0.2:1000")
    t = SessionTable(max_sessions=10, max_per_connection=2, max_per_credential=3)
    t.reset("s1", 0, a1)
    t.reset("s2", 0, a1)
    with pytest.raises(ServingError, match="this connection already holds 2 sessions"):
        t.reset("s3", 0, a1)
    t.reset("s3", 0, a2)
    with pytest.raises(ServingError, match="this credential already holds 3 sessions"):
        t.reset("s4", 0, a2)
    t.reset("s4", 0, b)  # another credential is not affected
    with pytest.raises(ServingError) as ei:
        t.admit("s1", 0, 0, b)
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED
    t.admit("s1", 0, 0, a2)  # same client, other connection, owner idle: taken over ...
    assert t.get("s1").owner == a2
    with pytest.raises(ServingError, match="connection already holds 2"):
        t.admit("s2", 0, 0, a2)  # ... but the new connection's cap still holds
    assert len(t) == 4


def test_long_session_ids_are_refused_with_a_bounded_message():
    t = SessionTable()
    with pytest.raises(ServingError) as ei:
        t.reset("s" * 100_000, 0)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and len(ei.value.message) < 100
    with pytest.raises(ServingError) as ei:
        t.admit("s" * 100_000, 0, 0)
    assert ei.value.code == grpc.StatusCode.NOT_FOUND and len(ei.value.message) < 250
    assert np.isscalar(len(t))
