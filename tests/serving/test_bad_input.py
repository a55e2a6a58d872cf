"""Every bad request gets a clear gRPC status; the server keeps serving a live client."""

import time

import grpc
import numpy as np
import pytest

from chunkwise.clients.remote_policy import RemoteError, RemotePolicy
from chunkwise.policies.testing import EchoPolicy, TestPolicyConfig
from chunkwise.types import stack_observations
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire import chunkwise_pb2_grpc as pb_grpc
from chunkwise.wire.codec import encode_request, encode_tensor

from .conftest import assert_live, state_obs


@pytest.fixture(scope="module")
def live(echo_server):
    with RemotePolicy(echo_server.address, session_id="live") as rp:
        yield rp


@pytest.fixture(scope="module")
def raw(echo_server):
    ch = grpc.insecure_channel(echo_server.address, options=[("grpc.max_send_message_length", 1 << 24)])
    stub = pb_grpc.PolicyServiceStub(ch)
    stub.Reset(pb.ResetRequest(session_id="bad", episode_id=0), timeout=5)
    yield ch, stub
    ch.close()


_ts = iter(range(1, 10**6))


def request(obs=None, **kw):
    kw = {"session_id": "bad", "episode_id": 0, "timestep": next(_ts), **kw}
    return encode_request(obs if obs is not None else state_obs(), **kw)


def expect(stub_call, code, match):
    with pytest.raises(grpc.RpcError) as ei:
        stub_call()
    assert ei.value.code() == code, ei.value.details()
    assert match in ei.value.details(), ei.value.details()


def test_malformed_bytes(raw, live):
    ch, _ = raw
    infer_raw = ch.unary_unary("/chunkwise.v1.PolicyService/Infer")  # no serializer: raw bytes
    expect(lambda: infer_raw(b"\xff\xfe\x00garbage\x12", timeout=5), grpc.StatusCode.INVALID_ARGUMENT,
           "malformed ObservationRequest")
    assert_live(live)


def test_unknown_dtype_and_truncated_tensor(raw, live):
    _, stub = raw
    req = request()
    req.observation["observation.state"].dtype = "object"
    expect(lambda: stub.Infer(req, timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "unknown dtype 'object'")
    req = request()
    req.observation["observation.state"].data = req.observation["observation.state"].data[:-3]
    expect(lambda: stub.Infer(req, timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "do not match")
    assert_live(live)


def test_wrong_shape_wrong_dtype_missing_key(raw, live):
    _, stub = raw
    expect(lambda: stub.Infer(request({"observation.state": np.zeros(7, np.float32)}), timeout=5),
           grpc.StatusCode.INVALID_ARGUMENT, "has shape (7,), expected (8,)")
    expect(lambda: stub.Infer(request({"observation.state": np.zeros(8, np.float64)}), timeout=5),
           grpc.StatusCode.INVALID_ARGUMENT, "dtype float64, expected float32")
    expect(lambda: stub.Infer(request({"observation.other": np.zeros(8, np.float32)}), timeout=5),
           grpc.StatusCode.INVALID_ARGUMENT, "missing required key 'observation.state'")
    assert_live(live)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(raw, live, bad):
    _, stub = raw
    obs = state_obs()
    obs["observation.state"][3] = bad
    expect(lambda: stub.Infer(request(obs), timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "NaN or inf")
    ctx = np.zeros((5, 4), np.float32)
    ctx[2, 1] = bad
    expect(lambda: stub.Infer(request(action_context=ctx), timeout=5), grpc.StatusCode.INVALID_ARGUMENT,
           "action_context contains NaN or inf")
    assert_live(live)


def test_oversized_messages(raw, live):
    _, stub = raw
    obs = state_obs()
    obs["observation.images.extra"] = np.zeros((100, 100, 3), np.uint8)  # 30 KB: under the limit, fine
    stub.Infer(request(obs), timeout=5)
    obs["observation.images.extra"] = np.zeros(65536, np.uint8)  # just over the 64 KiB app limit
    expect(lambda: stub.Infer(request(obs), timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "accepts at most 65536")
    # Well beyond it, gRPC refuses the message before buffering it all (its limit is the
    # app limit + 4 KiB, not 2x: a server never holds much more than it accepts).
    obs["observation.images.extra"] = np.zeros((128, 256, 3), np.uint8)  # 98 KB
    expect(lambda: stub.Infer(request(obs), timeout=5), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max")
    assert_live(live)


def test_missing_session_and_stale_episode(raw, live):
    _, stub = raw
    expect(lambda: stub.Infer(request(session_id="nobody"), timeout=5), grpc.StatusCode.NOT_FOUND,
           "unknown or expired session 'nobody'")
    stub.Reset(pb.ResetRequest(session_id="ep", episode_id=2), timeout=5)
    expect(lambda: stub.Infer(request(session_id="ep", episode_id=1), timeout=5),
           grpc.StatusCode.FAILED_PRECONDITION, "is at episode 2, request is for episode 1")
    expect(lambda: stub.Reset(pb.ResetRequest(session_id="ep", episode_id=1), timeout=5),
           grpc.StatusCode.FAILED_PRECONDITION, "cannot reset back")
    stub.Infer(request(session_id="ep", episode_id=2, timestep=5), timeout=5)
    expect(lambda: stub.Infer(request(session_id="ep", episode_id=2, timestep=5), timeout=5),
           grpc.StatusCode.FAILED_PRECONDITION, "not after the last one")
    assert_live(live)


def test_bad_action_context_shape(raw, live):
    _, stub = raw
    expect(lambda: stub.Infer(request(action_context=np.zeros((5, 3), np.float32)), timeout=5),
           grpc.StatusCode.INVALID_ARGUMENT, "action_context must have shape (N, 4)")
    assert_live(live)


def test_stream_reports_errors_in_band_and_stays_open(raw, live):
    _, stub = raw
    bad = request()
    bad.observation["observation.state"].dtype = "complex128"
    good = request()
    replies = list(stub.Stream(iter([bad, good]), timeout=10))
    assert replies[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "unknown dtype 'complex128'" in replies[0].error.message
    assert replies[1].error.code == 0 and replies[1].first_timestep == good.timestep
    assert_live(live)


def test_request_after_client_disconnect(echo_server, live):
    """A client that vanishes mid-request (stream cancelled, channel closed) harms no one."""
    for _ in range(3):
        ch = grpc.insecure_channel(echo_server.address)
        stub = pb_grpc.PolicyServiceStub(ch)
        stub.Reset(pb.ResetRequest(session_id="ghost", episode_id=0), timeout=5)
        call = stub.Stream(iter([request(session_id="ghost")] * 1))
        call.cancel()
        fut = stub.Infer.future(request(session_id="ghost"), timeout=5)
        ch.close()  # disconnect with the request (most likely) still in flight
        try:
            reply = fut.result()
            assert reply.first_timestep > 0  # it was fast enough to finish first: fine too
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.CANCELLED
        assert_live(live)
    # The orphaned session can still be used by a reconnecting client (same id).
    with RemotePolicy(echo_server.address, session_id="ghost") as again:
        assert again.predict_chunk({"observation.state": np.zeros((1, 8), np.float32), "task": ["t"]}).shape == (1, 10, 4)


def test_health_and_metadata(echo_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(echo_server.address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="chunkwise.v1.PolicyService"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        md = pb_grpc.PolicyServiceStub(ch).GetMetadata(pb.MetadataRequest(), timeout=5)
        assert md.protocol_version == 2 and md.chunk_size == 10 and md.prefix_length == 5
        assert md.max_message_bytes == 65536


# ---------------------------------------------------------------- non-finite values


def _f64_context(value: float) -> pb.Tensor:
    return encode_tensor(np.full((5, 4), value, np.float64))


def test_float64_action_context_is_rejected_not_cast_to_inf(raw, live):
    """float64 values beyond float32's range used to be cast to inf and echoed back as
    actions with OK. A context must be float32 (what encode_request sends)."""
    _, stub = raw
    req = request()
    req.action_context.CopyFrom(_f64_context(1e39))
    expect(lambda: stub.Infer(req, timeout=5), grpc.StatusCode.INVALID_ARGUMENT,
           "action_context has dtype float64, expected float32")
    req = request()
    req.action_context.CopyFrom(_f64_context(0.5))  # representable, still the wrong dtype
    expect(lambda: stub.Infer(req, timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "expected float32")
    bad = request()
    bad.action_context.CopyFrom(_f64_context(-1e39))
    good = request()
    replies = list(stub.Stream(iter([bad, good]), timeout=10))
    assert replies[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "float64" in replies[0].error.message and not replies[0].HasField("actions")
    assert replies[1].error.code == 0
    expect(lambda: stub.Infer(request(action_context=np.zeros((100, 4), np.float32)), timeout=5),
           grpc.StatusCode.INVALID_ARGUMENT, "action_context has 100 rows; at most 40")
    assert_live(live)


@pytest.fixture(scope="module")
def mlp_server():
    from chunkwise.policies.testing import MLPPolicy, TestPolicyConfig
    from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server

    srv = start_server(ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, max_wait_ms=50),
                       policy=MLPPolicy(TestPolicyConfig(type="mlp", hidden=32, model_ms=20)))
    yield srv
    srv.stop()


def test_non_finite_policy_output_is_an_error_never_an_action(mlp_server):
    """A finite but huge state (3.4e38) makes the MLP return NaN: that request fails
    with INTERNAL on Infer and on Stream; a batch-mate sent at the same time gets its
    own finite chunk."""
    addr = f"127.0.0.1:{mlp_server.port}"
    huge = state_obs()
    huge["observation.state"][:] = 3.4e38
    with RemotePolicy(addr, session_id="nan") as rp:
        with pytest.raises(RemoteError) as ei:
            rp.predict_chunk(stack_observations([huge]))
        assert ei.value.code == grpc.StatusCode.INTERNAL and "non-finite actions" in ei.value.message
        rp.ensure_session("nan-stream")
        reqs = [encode_request(o, session_id="nan-stream", episode_id=0, timestep=t)
                for t, o in enumerate([huge, state_obs(1.0)], start=1)]
        replies = list(rp.stub.Stream(iter(reqs), timeout=10))
        assert replies[0].error.code == grpc.StatusCode.INTERNAL.value[0] and not replies[0].HasField("actions")
        assert replies[1].error.code == 0
        assert np.isfinite(np.frombuffer(replies[1].actions.data, np.float32)).all()
        # batched with others (the model takes 20 ms, so they queue up together): only
        # the huge one fails
        for k in range(4):
            rp.ensure_session(f"nan/{k}")
        for rnd in range(3):
            obs = [state_obs(0.1), huge, state_obs(0.2), state_obs(0.3)]
            futs = [rp.stub.Infer.future(encode_request(o, session_id=f"nan/{k}", episode_id=0, timestep=rnd + 1),
                                         timeout=10) for k, o in enumerate(obs)]
            for k, f in enumerate(futs):
                if k == 1:
                    with pytest.raises(grpc.RpcError) as ei:
                        f.result()
                    assert ei.value.code() == grpc.StatusCode.INTERNAL and "non-finite" in ei.value.details()
                else:
                    assert np.isfinite(np.frombuffer(f.result().actions.data, np.float32)).all()
        sizes = mlp_server.service.batcher.batch_sizes
        assert max(sizes) > 1, sizes  # they did share a forward pass


def test_batch_mates_of_a_non_finite_row_get_their_chunks():
    from chunkwise.serving.batcher import DynamicBatcher, WorkItem
    from chunkwise.serving.sessions import ServingError

    calls = []

    def predict(obs, prefix):
        s = obs["observation.state"]
        calls.append(len(s))
        out = np.repeat(s[:, None, :], 2, axis=1).astype(np.float64) * 1e10  # float64 -> float32 overflow
        return out

    import threading
    import time as _time

    b = DynamicBatcher(predict, max_batch_size=8, max_wait_ms=100, action_dim=3)
    b._last_batch = 8
    items = [WorkItem(obs={"observation.state": np.full(3, v, np.float32), "task": "t"}, prefix=None,
                      deadline=_time.monotonic() + 5) for v in (1.0, 1e30, 2.0, 3.0)]
    out = {}

    def go(it):
        try:
            out[id(it)] = b.process(it).actions
        except ServingError as e:
            out[id(it)] = e

    threads = [threading.Thread(target=go, args=(it,)) for it in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    res = [out[id(it)] for it in items]
    assert isinstance(res[1], ServingError) and res[1].code == grpc.StatusCode.INTERNAL
    for r, v in zip([res[0], res[2], res[3]], (1.0, 2.0, 3.0)):
        assert isinstance(r, np.ndarray) and np.isfinite(r).all() and r[0, 0] == np.float32(v * 1e10)
    assert calls[0] == 4 and sum(calls) <= 4 + 4, calls  # one batch, then the bad row alone


# ---------------------------------------------------------------- sizes, keys, details


def test_many_extra_keys_are_refused_before_decoding(echo_server, live):
    """200,000 tiny extra keys used to take ~2 s per request (every key decoded, before
    the session check); now the key count is checked first."""
    from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server

    srv = start_server(ServeConfig(policy=ServePolicyConfig(type="echo"), port=0), policy=EchoPolicy())
    try:
        req = request()
        req.session_id = "keys"
        for i in range(200_000):
            req.observation[f"k{i}"].dtype = "float32"
        payload = req.SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}", options=[("grpc.max_send_message_length", 1 << 25)]) as ch:
            pb_grpc.PolicyServiceStub(ch).Reset(pb.ResetRequest(session_id="keys", episode_id=0), timeout=5)
            infer = ch.unary_unary("/chunkwise.v1.PolicyService/Infer")
            t0 = time.perf_counter()
            expect(lambda: infer(payload, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                   "observation has 200001 tensors; this policy reads 1 and at most 8 more")
            assert time.perf_counter() - t0 < 1.5  # mostly protobuf parsing the 3.6 MB message
            few = request(session_id="keys")
            for i in range(8):
                few.observation[f"extra{i}"].dtype = "not even a dtype"  # ignored, not decoded
            assert pb_grpc.PolicyServiceStub(ch).Infer(few, timeout=5).first_timestep == few.timestep
    finally:
        srv.stop()


def test_in_flight_bytes_are_capped():
    """Concurrent large requests beyond --max_inflight_bytes are refused at once
    (32 x 15 MiB used to raise the server's RSS by ~580 MB)."""
    import threading

    from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server

    mib = 1 << 20
    srv = start_server(ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, max_message_bytes=mib,
                                   max_inflight_bytes=3 * mib, max_batch_size=1),
                       policy=EchoPolicy(TestPolicyConfig(model_ms=200)))
    try:
        addr = f"127.0.0.1:{srv.port}"
        obs = state_obs()
        obs["observation.images.big"] = np.zeros(900_000, np.uint8)
        codes: list[str] = []
        remotes = [RemotePolicy(addr, session_id=f"big{i}") for i in range(12)]
        barrier = threading.Barrier(12)

        def go(rp):
            rp.ensure_session(rp.session_id)
            barrier.wait()
            try:
                rp.predict_chunk(stack_observations([obs]))
                codes.append("OK")
            except RemoteError as e:
                codes.append(e.code.name + (" bytes" if "max_inflight_bytes" in e.message else ""))

        threads = [threading.Thread(target=go, args=(r,)) for r in remotes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert "OK" in codes and "RESOURCE_EXHAUSTED bytes" in codes, codes
        assert srv.service.inflight.peak <= 3 * mib and srv.service.inflight.held == 0
        for r in remotes:
            r.close()
    finally:
        srv.stop()


def test_undecodable_metadata_and_reset_requests_are_invalid_argument(raw, live):
    ch, _ = raw
    for method in ("GetMetadata", "Reset"):
        call = ch.unary_unary(f"/chunkwise.v1.PolicyService/{method}")
        expect(lambda: call(b"\xff\xfe\x00garbage\x12", timeout=5), grpc.StatusCode.INVALID_ARGUMENT,
               f"malformed {'MetadataRequest' if method == 'GetMetadata' else 'ResetRequest'}")
    assert_live(live)


def test_error_details_are_bounded_and_name_the_field(raw, live):
    _, stub = raw
    long = "x" * 20_000
    req = request()
    req.observation["observation.state"].dtype = long
    with pytest.raises(grpc.RpcError) as ei:
        stub.Infer(req, timeout=5)
    d = ei.value.details()
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(d) < 400
    assert d.startswith("observation['observation.state']: unknown dtype 'xxxx") and "20000 characters" in d
    for kw, field in (({"session_id": long}, "session"), ({"prefix_mode": long}, "prefix_mode")):
        with pytest.raises(grpc.RpcError) as ei:
            stub.Infer(request(**kw) if "session_id" in kw else _with(request(), **kw), timeout=5)
        assert len(ei.value.details()) < 400 and field in ei.value.details(), ei.value.details()
    req = request()
    del req.observation["observation.state"]
    for i in range(5):
        req.observation[long[: 1000 + i]].dtype = "float32"
    with pytest.raises(grpc.RpcError) as ei:
        stub.Infer(req, timeout=5)
    assert "missing required key 'observation.state'" in ei.value.details() and len(ei.value.details()) < 700
    assert_live(live)


def _with(req, **fields):
    for k, v in fields.items():
        setattr(req, k, v)
    return req


def test_bad_input_logs_one_rate_limited_line_no_tracebacks():
    from chunkwise.serving.process import ServerProcess

    with ServerProcess(["--policy.type=echo", "--log_level=INFO"], lifetime_s=60) as srv:
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.PolicyServiceStub(ch)
            stub.Reset(pb.ResetRequest(session_id="bad", episode_id=0), timeout=5)
            infer = ch.unary_unary("/chunkwise.v1.PolicyService/Infer")
            reset = ch.unary_unary("/chunkwise.v1.PolicyService/Reset")
            for _ in range(100):
                for call in (lambda: infer(b"\xff\xfe", timeout=5), lambda: reset(b"\xff", timeout=5),
                             lambda: stub.Infer(request(action_context=np.zeros((2, 3), np.float32)), timeout=5)):
                    with pytest.raises(grpc.RpcError):
                        call()
        time.sleep(0.2)
        log = "\n".join(srv.output)
    assert "Traceback" not in log, log[:2000]
    rejected = [line for line in log.splitlines() if "rejected a request" in line]
    assert 1 <= len(rejected) <= 3, rejected  # 300 bad requests, one line per status per 10 s


def test_echo_policy_keeps_a_bounded_prefix_history():
    from chunkwise.types import Prefix

    p = EchoPolicy(TestPolicyConfig(prefix_length=2))
    ctx = np.zeros((2, 4), np.float32)
    for _ in range(3000):
        p.predict_chunk(stack_observations([state_obs()]), [Prefix(ctx, 0)])
    assert 0 < len(p.received_prefixes) <= 1024
