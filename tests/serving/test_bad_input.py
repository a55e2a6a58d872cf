"""Every bad request gets a clear gRPC status; the server keeps serving a live client."""

import grpc
import numpy as np
import pytest

from chunkwise.clients.remote_policy import RemotePolicy
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
    obs["observation.images.extra"] = np.zeros((128, 256, 3), np.uint8)  # 98 KB > 64 KiB app limit
    expect(lambda: stub.Infer(request(obs), timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "accepts at most 65536")
    obs["observation.images.extra"] = np.zeros((256, 256, 3), np.uint8)  # 196 KB > gRPC's 2x limit
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
