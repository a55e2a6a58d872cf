"""The flow strategies through the real VirtualClockExecutor: prefix timing end to end."""

from __future__ import annotations

import numpy as np
import pytest

from chunkwise.envs.base import ChunkEnv
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import available_strategies, get_strategy
from chunkwise.runtime.virtual_clock import VirtualClockExecutor
from chunkwise.types import FeatureSpec

from flow_helpers import tiny_config


class RampEnv(ChunkEnv):
    """State = [step index]; never succeeds; 30 steps."""

    task, fps, max_episode_steps, action_dim = "ramp", 10.0, 30, 2
    observation_spec = {"observation.state": FeatureSpec((1,), "float32")}

    def reset(self, seed=None):
        self.t = 0
        return {"observation.state": np.array([0.0], np.float32), "task": self.task}

    def step(self, action):
        self.t += 1
        return ({"observation.state": np.array([self.t], np.float32), "task": self.task}, 0.0, False,
                self.t >= self.max_episode_steps, {"success": False})

    def idle_action(self):
        return np.zeros(2, np.float32)


def _policy(**kw):
    info = DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((1,), "float32")}, action_dim=2, fps=10.0,
        stats={"observation.state": {"mean": np.zeros(1), "std": np.full(1, 10.0)},
               "action": {"mean": np.zeros(2), "std": np.ones(2)}},
    )
    return tiny_config(**kw).make_policy(info)


def test_flow_strategies_are_listed():
    assert {"rtc_guided", "rtc_trained", "delta_expert"} <= set(available_strategies())


@pytest.mark.parametrize("name", ["rtc_guided", "rtc_trained", "delta_expert"])
def test_prefix_reaches_the_policy_aligned_to_the_observation_step(name):
    policy = _policy(rtc_training=True, delta_expert=True)
    spec = get_strategy(name)
    cfg = spec.apply(ExecutionConfig(actions_per_chunk=8, chunk_size_threshold=0.75))
    assert cfg.strategy == "async" and cfg.aggregate_fn_name == "latest_only"
    view = spec.wrap_policy(policy)
    assert view.metadata.prefix_length == (5 if name == "delta_expert" else 0)
    seen = []
    inner = view.predict_chunk

    def spy(obs, prefix=None):
        out = inner(obs, prefix)
        seen.append((int(obs["observation.state"][0, 0]), prefix[0], out[0]))
        return out

    view.predict_chunk = spy
    d = 2
    roll = VirtualClockExecutor(RampEnv(), view, cfg, delay=d).run_episode(seed=0)
    executed = roll.trace.actions
    checked = 0
    for t, prefix, chunk in seen:
        assert prefix.delay == d
        n = len(prefix.actions)
        if n == 0:
            continue
        # prefix.actions[i] is the action that runs at control step t + i (the first d run
        # while this chunk is computed)
        np.testing.assert_array_equal(prefix.actions[:d], executed[t : t + d])
        checked += 1
        if name == "rtc_trained":  # frozen prefix reproduced by the new chunk
            np.testing.assert_allclose(chunk[:d], prefix.actions[:d], atol=1e-5)
    assert checked >= 3
