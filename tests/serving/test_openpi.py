"""openpi websocket endpoint (``chunkwise serve --openpi_port``) and the msgpack-numpy codec.

A real ``chunkwise serve`` process on 127.0.0.1; the client speaks openpi's protocol with
chunkwise's own codec (the real openpi-client is tested in test_openpi_client.py, in its
own venv)."""

import re
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the openpi endpoint needs `pip install -e '.[openpi]'`")
pytest.importorskip("msgpack", reason="the openpi endpoint needs `pip install -e '.[openpi]'`")

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from chunkwise.policies.testing import TestPolicyConfig, make_test_policy  # noqa: E402
from chunkwise.serving.openpi import OpenpiKeys  # noqa: E402
from chunkwise.serving.openpi_client import OpenpiServerError, OpenpiWebsocketClient  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402
from chunkwise.types import FeatureSpec, stack_observations  # noqa: E402
from chunkwise.wire import msgpack_numpy as mn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "openpi-test-token-0123456789"
IMG = 16


def openpi_port(srv: ServerProcess) -> int:
    line = next(x for x in srv.output if "listening on" in x)
    m = re.search(r"openpi=ws://\S+:(\d+)", line)
    assert m, line
    return int(m.group(1))


def obs(t: float = 0.0, wrist: bool = True) -> dict:
    state = np.arange(8, dtype=np.float64) / 10  # float64, as LIBERO's client sends
    state[0] = t
    o = {"observation/state": state, "observation/image": np.full((IMG, IMG, 3), 7, np.uint8), "prompt": "push"}
    if wrist:
        o["observation/wrist_image"] = np.full((IMG, IMG, 3), 9, np.uint8)
    return o


def local_actions(cfg: TestPolicyConfig, o: dict) -> np.ndarray:
    policy = make_test_policy(cfg)
    local = {"observation.state": o["observation/state"].astype(np.float32), "task": o["prompt"],
             "observation.images.cam0": o["observation/image"], "observation.images.cam1": o["observation/wrist_image"]}
    return policy.predict_chunk(stack_observations([local]))[0]


POLICY = ["--policy.type=mlp", "--policy.hidden=32", "--policy.cameras=2", f"--policy.image_size={IMG}",
          "--policy.chunk_size=10"]


@pytest.fixture(scope="module")
def server():
    with ServerProcess([*POLICY, "--openpi_port=0", "--max_message_bytes=65536", "--max_wait_ms=20"],
                       lifetime_s=120) as srv:
        yield srv, openpi_port(srv)


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize("value", [
    1, 1.5, "hi", b"raw", [1, 2], {"k": {"n": [1]}}, np.float32(2.5), np.int64(-3), np.bool_(True),
    np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((0, 4), np.uint8), np.array(3.0),
    np.array(["ab", "c"]), np.array([np.nan, np.inf]), np.arange(4, dtype=">i4"),
])
def test_codec_round_trip(value):
    back = mn.unpackb(mn.packb(value))
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value and type(back) is type(value)


def test_codec_wire_format():
    """The format openpi's clients read: a map with binary keys, dtype.str, shape as array."""
    import msgpack

    a = np.arange(3, dtype=np.float32)
    raw = msgpack.unpackb(mn.packb({"a": a}), raw=False)
    assert raw == {"a": {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": "<f4", b"shape": [3]}}
    assert msgpack.unpackb(mn.packb(np.int16(5)), raw=False) == {b"__npgeneric__": True, b"data": 5, b"dtype": "<i2"}


@pytest.mark.parametrize("value", [np.zeros(2, np.complex64), np.zeros(2, object), np.zeros(2, "V4")])
def test_codec_refuses_to_pack_object_void_complex(value):
    with pytest.raises(ValueError, match="unsupported dtype"):
        mn.packb(value)


def _array_map(**over):
    import msgpack

    m = {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "<f4", b"shape": [2]}
    m.update({k.encode(): v for k, v in over.items()})
    return msgpack.packb(m, use_bin_type=True)


@pytest.mark.parametrize("payload, match", [
    (b"\xc1", "not valid msgpack"),
    (b"\x92\x01", "not valid msgpack"),
    (_array_map(dtype="|O"), "unsupported dtype"),
    (_array_map(dtype="<c8"), "unsupported dtype"),
    (_array_map(dtype="|V8"), "unsupported dtype"),
    (_array_map(dtype="[('a','<f4')]"), "unknown array dtype"),
    (_array_map(dtype=5), "dtype must be"),
    (_array_map(shape=[3]), "needs 12 bytes, got 8"),
    (_array_map(shape=[-1, -2]), "non-negative"),
    (_array_map(shape=[1] * 9), "at most 8"),
    (_array_map(data="text"), "must be bytes"),
    (b"\x81\xab__ndarray__\xc3", "no 'dtype'"),
    (b"\xd4\x01\x00", "extension type"),
    (b"\x01\x02", "more than one"),
    (b"\x91" * 100_000 + b"\x01", "not valid msgpack"),  # nested too deep
    (b"\xdd\xff\xff\xff\xff", "exceeds max_array_len"),  # a 4G-element array declared in 5 bytes
    (b"\x81\x01\x02", "not allowed for map key"),
])
def test_codec_rejects_malformed(payload, match):
    with pytest.raises(mn.MsgpackNumpyError, match=match):
        mn.unpackb(payload)


def test_bench_extra_does_not_pull_openpi_client():
    """openpi-client pins numpy<2, which breaks pyarrow (and so `chunkwise collect`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, reqs in {"core": project["dependencies"], **project["optional-dependencies"]}.items():
        assert not any(re.match(r"openpi[-_]client", r, re.I) for r in reqs), (name, reqs)


def test_key_map_defaults_and_overrides():
    spec = {"observation.state": FeatureSpec((4,), "float32"), "observation.images.top": FeatureSpec((2, 2, 3), "uint8")}
    keys = OpenpiKeys.for_spec(spec, "observation/image=,observation/cam_high=observation.images.top")
    assert keys.mapping["observation/state"] == "observation.state"
    assert keys.mapping["observation/cam_high"] == "observation.images.top"
    assert keys.mapping["observation/image"] == "" and keys.mapping["prompt"] == "task"
    with pytest.raises(ValueError, match="not in the policy's observation spec"):
        OpenpiKeys.for_spec(spec, "observation/image=observation.images.nope")
    with pytest.raises(ValueError, match="must look like"):
        OpenpiKeys.for_spec(spec, "observation/image")


# ---------------------------------------------------------------- the endpoint


def test_metadata_actions_equal_local_inference_and_healthz(server):
    srv, port = server
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.status == 200
    cfg = TestPolicyConfig(type="mlp", hidden=32, cameras=2, image_size=IMG, chunk_size=10)
    with OpenpiWebsocketClient("127.0.0.1", port) as c:
        md = c.metadata
        assert md["server"] == "chunkwise" and md["chunk_size"] == 10 and md["action_dim"] == 4
        assert md["observation_keys"]["observation/wrist_image"] == "observation.images.cam1"
        for t in range(3):
            out = c.infer(obs(t))
            assert out["actions"].shape == (10, 4) and out["actions"].dtype == np.float32
            np.testing.assert_array_equal(out["actions"], local_actions(cfg, obs(t)))
            assert out["server_timing"]["batch_size"] >= 1 and out["server_timing"]["infer_ms"] > 0
        assert c.episode_start() == {"__ack__": "episode_start"}  # a new episode: timesteps start over
        assert c.infer(obs(5))["actions"].shape == (10, 4)
        # CHW images (openpi's ALOHA convention) are transposed to the policy's HWC
        o = obs(1)
        chw = {**o, "observation/image": np.ascontiguousarray(o["observation/image"].transpose(2, 0, 1))}
        np.testing.assert_array_equal(c.infer(chw)["actions"], local_actions(cfg, o))


def test_32_connections_are_batched_together(server):
    srv, port = server
    n, per_client = 32, 6
    clients = [OpenpiWebsocketClient("127.0.0.1", port) for _ in range(n)]
    sizes: list[int] = []
    errors: list[str] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            for t in range(per_client):
                out = clients[i].infer(obs(i + 100 * t))
                assert out["actions"].shape == (10, 4)
                sizes.append(out["server_timing"]["batch_size"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for c in clients:
        c.close()
    assert not errors, errors[:3]
    assert len(sizes) == n * per_client
    assert np.mean(sizes) > 1, sizes  # one forward pass served several connections


def _bad(port: int, frame) -> str:  # noqa: ANN001
    """Send one bad frame; the server answers with a text frame, then closes."""
    with OpenpiWebsocketClient("127.0.0.1", port) as c:
        with pytest.raises(OpenpiServerError) as e:
            c.send_raw(frame)
        with pytest.raises(ConnectionClosed):
            c._ws.recv(timeout=5)
    return str(e.value)


@pytest.mark.parametrize("frame, match", [
    (b"\xc1\xc1", "not valid msgpack"),
    ("hello", "text frame"),
    (mn.packb([1, 2]), "expected a msgpack map"),
    (mn.packb({**obs(), "observation/state": np.zeros(3)}), r"has shape \(3,\), expected \(8,\)"),
    (mn.packb({**obs(), "observation/state": "x"}), "numeric array"),
    (mn.packb({**obs(), "observation/image": np.zeros((IMG, IMG, 3), np.float32)}), "must be a uint8 array"),
    (mn.packb({**obs(), "observation/image": np.zeros((4, 4, 3), np.uint8)}), "has shape"),
    (mn.packb({**obs(), "observation/state": np.full(8, np.nan)}), "NaN or inf"),
    (mn.packb({**obs(), "observation/state": np.full(8, 1e300)}), "NaN or inf"),
    (mn.packb({**obs(), "observation/extra": np.zeros(2)}), "unknown observation key 'observation/extra'"),
    (mn.packb({**obs(), "prompt": 5}), "must be a string"),
    (mn.packb({k: v for k, v in obs().items() if k != "observation/wrist_image"}), "missing 'observation/wrist_image'"),
    (mn.packb({**obs(), "observation/state": np.zeros(8, np.complex64).view("<f4")[:8]}), None),  # fine: float32
    (mn.packb({**obs(), "chunkwise/action_context": np.zeros((2, 4), np.float32)}), None),  # no prefix policy: ignored
    (mn.packb(obs()) + b"\0" * 64500, "accepts at most 65536"),
])
def test_bad_frames_close_only_that_connection(server, frame, match):
    srv, port = server
    with OpenpiWebsocketClient("127.0.0.1", port) as bystander:
        assert bystander.infer(obs(1))["actions"].shape == (10, 4)
        if match is None:
            with OpenpiWebsocketClient("127.0.0.1", port) as c:
                assert c.send_raw(frame)["actions"].shape == (10, 4)
        else:
            assert re.search(match, _bad(port, frame)), match
        assert bystander.infer(obs(2))["actions"].shape == (10, 4)  # unaffected


def test_far_oversized_frame_closes_with_1009(server):
    srv, port = server
    with OpenpiWebsocketClient("127.0.0.1", port) as c:
        with pytest.raises(ConnectionClosed) as e:
            c.send_raw(b"\0" * 200_000)
        assert e.value.rcvd.code == 1009


def test_idle_timeout_token_and_action_context():
    with ServerProcess(["--policy.type=echo", "--policy.chunk_size=10", "--policy.prefix_length=5", "--openpi_port=0",
                        "--stream_idle_timeout_s=1"], env={"CHUNKWISE_TOKEN": TOKEN}, lifetime_s=60) as srv:
        port = openpi_port(srv)
        with pytest.raises(InvalidStatus, match="401"):
            OpenpiWebsocketClient("127.0.0.1", port)
        with pytest.raises(InvalidStatus, match="401"):
            OpenpiWebsocketClient("127.0.0.1", port, api_key="wrong-token-0123456789")
        with OpenpiWebsocketClient("127.0.0.1", port, api_key=TOKEN) as c:
            state = np.arange(8, dtype=np.float32)
            out = c.infer({"observation/state": state})
            np.testing.assert_array_equal(out["actions"][:, 0], np.arange(10, dtype=np.float32))
            # a prefix-aware client sends its queue: the echo policy returns it verbatim in rows 0..N-1
            ctx = np.full((3, 4), 0.5, np.float32)
            out = c.infer({"observation/state": state, "chunkwise/action_context": ctx, "chunkwise/delay": 1})
            np.testing.assert_array_equal(out["actions"][:3], ctx)
            np.testing.assert_array_equal(out["actions"][3:, 1], np.ones(7, np.float32))
            with pytest.raises(OpenpiServerError, match="action_context must have shape"):
                c.infer({"observation/state": state, "chunkwise/action_context": np.zeros((2, 3), np.float32)})
        with OpenpiWebsocketClient("127.0.0.1", port, api_key=TOKEN) as idle:
            with pytest.raises(OpenpiServerError, match="no request for 1 s"):
                idle._reply()  # sends nothing: dropped after the idle timeout


def test_tls_in_process(tmp_path):
    """--tls_cert/--tls_key apply to the openpi port too (wss://); start_server wires it."""
    import ssl
    import subprocess

    from chunkwise.policies.testing import EchoPolicy
    from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        capture_output=True,
    )
    if r.returncode != 0:
        pytest.skip(f"openssl unavailable: {r.stderr[:200]!r}")
    cfg = ServeConfig(policy=ServePolicyConfig(type="echo"), host="localhost", port=0, openpi_port=0,
                      tls_cert=str(cert), tls_key=str(key))
    srv = start_server(cfg, policy=EchoPolicy())
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with OpenpiWebsocketClient(f"wss://localhost:{srv.openpi.port}", ssl_context=ctx) as c:
            out = c.infer({"observation/state": np.arange(8, dtype=np.float32)})
            np.testing.assert_array_equal(out["actions"][:, 0], np.arange(10, dtype=np.float32))
        with pytest.raises(Exception):  # noqa: B017 - a plaintext client against the TLS port
            OpenpiWebsocketClient("127.0.0.1", srv.openpi.port, open_timeout_s=2)
    finally:
        srv.stop()


def test_openpi_flags_validated():
    from chunkwise.serving.server import parse_serve_config

    cfg = parse_serve_config(["--policy.type=echo", "--openpi_port=0",
                              "--openpi_keys=observation/joint_position=observation.state"], environ={})
    assert cfg.openpi_port == 0 and cfg.openpi_keys == "observation/joint_position=observation.state"
    with pytest.raises(ValueError, match="openpi_port must be -1"):
        parse_serve_config(["--policy.type=echo", "--openpi_port=-2"], environ={})


def test_fast_path_typed_messages_over_the_same_port(server):
    """/chunkwise.v1: ObservationRequest in, ChunkReply out, errors in-band (as on Stream)."""
    from chunkwise.serving.openpi_client import FastWebsocketClient
    from chunkwise.wire.codec import decode_tensor, encode_request

    srv, port = server
    cfg = TestPolicyConfig(type="mlp", hidden=32, cameras=2, image_size=IMG, chunk_size=10)
    o = obs(2.0)
    local = {"observation.state": o["observation/state"].astype(np.float32), "task": o["prompt"],
             "observation.images.cam0": o["observation/image"], "observation.images.cam1": o["observation/wrist_image"]}
    with FastWebsocketClient("127.0.0.1", port) as c:
        assert c.metadata.chunk_size == 10 and c.metadata.action_dim == 4
        assert c.reset("fast-1", 0).episode_id == 0
        r = c.infer(encode_request(local, session_id="fast-1", episode_id=0, timestep=1))
        assert r.error.code == 0 and r.first_timestep == 1
        np.testing.assert_array_equal(decode_tensor(r.actions), local_actions(cfg, o))
        r = c.infer(encode_request(local, session_id="fast-1", episode_id=0, timestep=1))  # not after the last
        assert r.error.code != 0 and "not after the last one" in r.error.message
        r = c.infer(encode_request({**local, "observation.state": np.zeros(3, np.float32)}, session_id="fast-1",
                                   episode_id=0, timestep=2))
        assert r.error.code != 0 and "observation.state" in r.error.message
        c._ws.send(b"O\xff\xff\xff")  # not protobuf
        assert "malformed" in c._pb.ChunkReply.FromString(c._recv()[1:]).error.message
        c._ws.send(b"X")
        assert "unknown frame tag" in c._pb.ChunkReply.FromString(c._recv()[1:]).error.message
        r = c.infer(encode_request(local, session_id="fast-1", episode_id=0, timestep=3))  # still open
        assert r.error.code == 0
        with pytest.raises(OpenpiServerError, match="session_id must be a non-empty"):
            c.reset("", 0)


def test_sessions_end_with_their_connections():
    from chunkwise.policies.testing import EchoPolicy
    from chunkwise.serving.server import ServeConfig, ServePolicyConfig, start_server

    srv = start_server(ServeConfig(policy=ServePolicyConfig(type="echo"), port=0, openpi_port=0,
                                   max_sessions_per_credential=4), policy=EchoPolicy())
    try:
        for _ in range(10):  # more connections, one after the other, than sessions allowed at once
            with OpenpiWebsocketClient("127.0.0.1", srv.openpi.port) as c:
                assert c.infer({"observation/state": np.zeros(8, np.float32)})["actions"].shape == (10, 4)
        deadline = time.monotonic() + 5
        while len(srv.service.sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.service.sessions) == 0
    finally:
        srv.stop()
