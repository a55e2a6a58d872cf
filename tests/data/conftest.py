from __future__ import annotations

from pathlib import Path

import pytest

from chunkwise.data.collect import CollectConfig, collect_demonstrations
from chunkwise.envs import MetaWorldEnvConfig


@pytest.fixture(scope="module")
def reach_dataset(tmp_path_factory) -> Path:
    """2 successful reach-v3 expert episodes (state only), collected once per module."""
    out = tmp_path_factory.mktemp("collect") / "reach"
    cfg = CollectConfig(env=MetaWorldEnvConfig(task="reach-v3"), n_episodes=2, output_dir=str(out), seed=0,
                        progress=False)
    return collect_demonstrations(cfg)
