"""The real openpi-client against a real ``chunkwise serve --openpi_port`` process.

openpi-client pins numpy<2, so it lives in its own venv (.venv-openpi, built by
scripts/setup_openpi_venv.sh, which `make test` runs); the server runs from this venv.
Skipped, with the reason, when .venv-openpi cannot be built (no network for pip).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the openpi endpoint needs `pip install -e '.[openpi]'`")

from chunkwise.policies.testing import TestPolicyConfig, make_test_policy  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402
from chunkwise.types import stack_observations  # noqa: E402
from chunkwise.wire import msgpack_numpy as mn  # noqa: E402

from .test_openpi import IMG, obs, openpi_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / ".venv-openpi" / "bin" / "python"
CODEC_CASES = [
    {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, np.zeros((0, 4), np.uint8), np.array(2.0),
    np.arange(5, dtype=np.int64), np.array([True, False]), np.array(["ab", "c"]), np.float32(1.5), np.int16(-2),
    np.bool_(True), [1, 2.5, "s", b"b", None], {"nested": {"x": np.full((2, 2, 3), 7, np.uint8)}},
    np.array([np.nan, np.inf, -np.inf]), obs(3.0),
]


@pytest.fixture(scope="module")
def openpi_python():
    if not VENV_PY.exists():
        r = subprocess.run(["bash", str(ROOT / "scripts" / "setup_openpi_venv.sh")], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            pytest.skip(f".venv-openpi could not be built: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    r = subprocess.run([str(VENV_PY), "-c", "import openpi_client.websocket_client_policy"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"openpi-client does not import in .venv-openpi: {r.stderr.strip().splitlines()[-1:]}")
    return str(VENV_PY)


def test_real_openpi_client(openpi_python, tmp_path):
    cfg = TestPolicyConfig(type="mlp", hidden=32, cameras=2, image_size=IMG, chunk_size=10)
    observations = [obs(float(t)) for t in range(25)]
    cases = tmp_path / "cases.msgpack"
    cases.write_bytes(mn.packb({"codec": [mn.packb(v) for v in CODEC_CASES], "observations": observations}))
    with ServerProcess(["--policy.type=mlp", "--policy.hidden=32", "--policy.cameras=2", f"--policy.image_size={IMG}",
                        "--policy.chunk_size=10", "--openpi_port=0", "--max_wait_ms=20"], lifetime_s=120) as srv:
        r = subprocess.run([openpi_python, str(Path(__file__).with_name("openpi_client_check.py")),
                            str(openpi_port(srv)), str(cases)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["numpy"].startswith("1."), out["numpy"]  # really the other numpy
    # byte for byte: openpi decodes what chunkwise packed and packs it back to the same bytes
    for value, theirs in zip(CODEC_CASES, out["codec"]):
        assert bytes.fromhex(theirs) == mn.packb(value), value
    assert out["metadata"] == {"server": "chunkwise", "chunk_size": 10, "action_dim": 4}
    # ActionChunkBroker: a request every 10 steps, every executed action from local inference
    policy = make_test_policy(cfg)
    for t, action in enumerate(out["steps"]):
        o = observations[t - t % 10]
        local = {"observation.state": o["observation/state"].astype(np.float32), "task": o["prompt"],
                 "observation.images.cam0": o["observation/image"], "observation.images.cam1": o["observation/wrist_image"]}
        expected = policy.predict_chunk(stack_observations([local]))[0][t % 10]
        np.testing.assert_array_equal(np.asarray(action, np.float32), expected)
    assert not out["errors"], out["errors"][:3]
    assert len(out["batch_sizes"]) == 32 * 5 and np.mean(out["batch_sizes"]) > 1, out["batch_sizes"]
    assert out["bad"].startswith("Error in inference server") and "unknown observation key" in out["bad"]
