import numpy as np
import pytest

from chunkwise.serving.process import ServerProcess
from chunkwise.types import stack_observations

STATE_DIM = 8


def state_obs(value: float = 0.0, dim: int = STATE_DIM) -> dict:
    s = np.zeros(dim, np.float32)
    s[0] = value
    return {"observation.state": s, "task": "t"}


def assert_live(remote, value: float = 3.0) -> None:
    """The server still answers another client correctly."""
    out = remote.predict_chunk(stack_observations([state_obs(value)]))
    assert out.shape == (1, 10, 4) and out[0, 0, 0] == value and out[0, 9, 0] == value + 9


@pytest.fixture(scope="session")
def echo_server():
    """A real `chunkwise serve` process (echo policy, 64 KiB message limit) on loopback."""
    srv = ServerProcess(
        ["--policy.type=echo", f"--policy.state_dim={STATE_DIM}", "--policy.chunk_size=10",
         "--policy.prefix_length=5", "--max_message_bytes=65536"],
        lifetime_s=120,
    )
    with srv:
        yield srv
