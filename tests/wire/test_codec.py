import numpy as np
import pytest

from chunkwise.types import FeatureSpec, PolicyMetadata
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire.codec import (
    ALLOWED_DTYPES,
    SpecDecoder,
    WireError,
    decode_metadata,
    decode_observation,
    decode_prefix,
    decode_tensor,
    encode_metadata,
    encode_request,
    encode_tensor,
)


@pytest.mark.parametrize("dtype", sorted(ALLOWED_DTYPES))
def test_tensor_roundtrip_every_allowed_dtype(dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((2, 3, 4)) * 100).astype(dtype)
    back = decode_tensor(encode_tensor(arr))
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr)


def test_big_endian_and_non_contiguous_inputs_are_normalised():
    arr = np.arange(12, dtype=">f4").reshape(3, 4).T  # big endian, transposed view
    back = decode_tensor(encode_tensor(arr))
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("bad", [np.array(["a"]), np.array([1 + 2j]), np.array([object()], dtype=object)])
def test_encode_rejects_unsafe_dtypes(bad):
    with pytest.raises(WireError, match="cannot be sent"):
        encode_tensor(bad)


def test_decode_rejects_unknown_dtype_size_mismatch_and_bad_shapes():
    with pytest.raises(WireError, match="unknown dtype 'object'"):
        decode_tensor(pb.Tensor(dtype="object", shape=[1], data=b"x" * 8))
    with pytest.raises(WireError, match="do not match"):
        decode_tensor(pb.Tensor(dtype="float32", shape=[3], data=b"\0" * 11))
    with pytest.raises(WireError, match="negative"):
        decode_tensor(pb.Tensor(dtype="uint8", shape=[-1], data=b""))
    with pytest.raises(WireError, match="dimensions"):
        decode_tensor(pb.Tensor(dtype="uint8", shape=[1] * 9, data=b"\0"))
    with pytest.raises(WireError, match="exceeds"):
        decode_tensor(pb.Tensor(dtype="uint8", shape=[10**9], data=b""), max_bytes=1000)


def test_observation_request_roundtrip_with_context():
    obs = {
        "observation.state": np.arange(5, dtype=np.float32),
        "observation.images.top": np.full((4, 4, 3), 7, np.uint8),
        "task": "push the puck",
    }
    ctx = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    req = encode_request(obs, session_id="s", episode_id=3, timestep=17, action_context=ctx, estimated_delay=2)
    req = pb.ObservationRequest.FromString(req.SerializeToString())
    back = decode_observation(req)
    assert back["task"] == "push the puck" and req.timestep == 17 and req.episode_id == 3
    np.testing.assert_array_equal(back["observation.images.top"], obs["observation.images.top"])
    prefix = decode_prefix(req, action_dim=4)
    assert prefix.delay == 2
    assert prefix.actions.tobytes() == ctx.tobytes()  # bit exact
    with pytest.raises(WireError, match=r"\(N, 3\)"):
        decode_prefix(req, action_dim=3)
    assert decode_prefix(encode_request(obs, session_id="s", episode_id=0, timestep=0), 4) is None


def test_non_finite_observations_are_rejected():
    obs = {"observation.state": np.array([0.0, np.nan], np.float32)}
    with pytest.raises(WireError, match="NaN or inf"):
        decode_observation(encode_request(obs, session_id="s", episode_id=0, timestep=0))
    ctx = np.array([[np.inf, 0.0]], np.float32)
    req = encode_request({"observation.state": np.zeros(2, np.float32)}, session_id="s", episode_id=0, timestep=0,
                         action_context=ctx)
    with pytest.raises(WireError, match="NaN or inf"):
        decode_prefix(req, action_dim=2)


def test_metadata_roundtrip_and_version_check():
    md = PolicyMetadata(
        observation_spec={"observation.state": FeatureSpec((39,), "float32"),
                          "observation.images.cam": FeatureSpec((8, 8, 3), "uint8")},
        action_dim=4, chunk_size=50, fps=80.0, policy_type="act", prefix_length=5,
        prefix_modes={"rtc_guided": 0, "delta_expert": 5}, extra={"note": "x"},
    )
    msg = encode_metadata(md, max_batch_size=16)
    assert msg.max_batch_size == 16
    assert decode_metadata(pb.PolicyMetadata.FromString(msg.SerializeToString())) == md
    msg.protocol_version = 99
    with pytest.raises(WireError, match="protocol v99"):
        decode_metadata(msg)


def test_spec_decoder_accepts_exact_matches_and_defers_everything_else():
    """The server's hot path: anything that is not an exact, finite match returns None,
    so the general path (which names the problem) decides."""
    spec = {"observation.state": FeatureSpec((3,), "float32"), "observation.images.cam": FeatureSpec((2, 2, 3), "uint8")}
    dec = SpecDecoder(spec)
    good = {"observation.state": np.array([1, 2, 3], np.float32), "observation.images.cam": np.ones((2, 2, 3), np.uint8),
            "task": "push"}

    def req(**changes):
        return encode_request({**good, **changes}, session_id="s", episode_id=0, timestep=0)

    out = dec.decode(req())
    assert out is not None and sorted(out) == sorted(good) and out["task"] == "push"
    np.testing.assert_array_equal(out["observation.state"], good["observation.state"])
    assert out["observation.images.cam"].shape == (2, 2, 3) and out["observation.images.cam"].dtype == np.uint8
    bad_cases = [
        {"observation.state": np.array([1, 2, np.nan], np.float32)},  # NaN
        {"observation.state": np.array([1, 2, np.inf], np.float32)},  # inf
        {"observation.state": np.zeros(3, np.float64)},  # dtype
        {"observation.state": np.zeros(4, np.float32)},  # shape
        {"observation.state": np.zeros((3, 1), np.float32)},  # same size, other shape
        {"extra": np.zeros(1, np.float32)},  # a key the spec does not have
    ]
    for change in bad_cases:
        assert dec.decode(req(**change)) is None, change
    missing = req()
    del missing.observation["observation.images.cam"]
    assert dec.decode(missing) is None
    assert "observation.images.cam" not in missing.observation  # the lookup did not insert it
    short = req()
    short.observation["observation.state"].data = b"\0" * 11  # length != 3 * 4
    assert dec.decode(short) is None
    renamed = req()
    renamed.observation["observation.state"].dtype = "int32"  # same itemsize, other dtype
    assert dec.decode(renamed) is None


def test_a_client_of_another_protocol_version_gets_both_versions_named():
    from chunkwise.wire import chunkwise_pb2 as pb
    from chunkwise.wire.codec import PROTOCOL_VERSION, WireError, decode_metadata

    msg = pb.PolicyMetadata(protocol_version=1, action_dim=4, chunk_size=10, fps=80.0, policy_type="act")
    with pytest.raises(WireError, match=f"server speaks chunkwise protocol v1, this client v{PROTOCOL_VERSION}"):
        decode_metadata(msg)
    assert PROTOCOL_VERSION == 2
