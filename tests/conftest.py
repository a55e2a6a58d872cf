import os
from pathlib import Path

import pytest

# Offscreen rendering on CPU; must be set before mujoco is imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def lerobot_tiny() -> Path:
    """A LeRobot v3 dataset written by LeRobot 0.6.1 itself (see fixtures/README.md)."""
    return FIXTURES / "lerobot-v3-tiny"


@pytest.fixture
def one_torch_thread():
    """Small models on 2 shared cores are fastest on one intra-op thread; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def push_env():
    """A state-only push-v3 env shared by a module's tests, closed after them."""
    from chunkwise.envs import MetaWorldEnvConfig, make_env

    env = make_env(MetaWorldEnvConfig(task="push-v3"))
    yield env
    env.close()
