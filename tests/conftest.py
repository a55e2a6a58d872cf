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


def _metaworld_info(task: str | None = "push-v3", action_std: float = 0.5):
    """DatasetInfo of a state-only MetaWorld dataset (39-d state, 4-d action, 80 fps), unit
    state stats: enough to build any trainable policy for MetaWorld without data."""
    import numpy as np

    from chunkwise.policies.common.trainable import DatasetInfo
    from chunkwise.types import FeatureSpec

    kw = {} if task is None else {"task": task}
    return DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((39,), "float32")}, action_dim=4, fps=80.0,
        stats={"observation.state": {"mean": np.zeros(39, np.float32), "std": np.ones(39, np.float32)},
               "action": {"mean": np.zeros(4, np.float32), "std": np.full(4, action_std, np.float32)}},
        **kw,
    )


@pytest.fixture(scope="session")
def metaworld_info():
    """``metaworld_info(task="push-v3", action_std=0.5) -> DatasetInfo`` (see ``_metaworld_info``)."""
    return _metaworld_info
