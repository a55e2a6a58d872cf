"""A tiny deterministic env and policies for executor tests (no MetaWorld, no model)."""

from __future__ import annotations

import numpy as np

from chunkwise.envs.base import ChunkEnv
from chunkwise.types import FeatureSpec, PolicyMetadata


class CounterEnv(ChunkEnv):
    """State = [step index]; success when the summed action[0] crosses ``goal``."""

    def __init__(self, max_episode_steps: int = 40, goal: float | None = None) -> None:
        self.task = "count"
        self.fps = 10.0
        self.max_episode_steps = max_episode_steps
        self.action_dim = 2
        self.observation_spec = {"observation.state": FeatureSpec((1,), "float32")}
        self.goal = goal
        self.t = 0
        self.total = 0.0
        self.seed = None

    def _obs(self):
        return {"observation.state": np.array([self.t], dtype=np.float32), "task": self.task}

    def reset(self, seed=None):
        self.t, self.total, self.seed = 0, 0.0, seed
        return self._obs()

    def step(self, action):
        self.t += 1
        self.total += float(action[0])
        success = self.goal is not None and self.total >= self.goal
        return self._obs(), float(success), success, self.t >= self.max_episode_steps, {"success": success}

    def idle_action(self):
        return np.array([-1.0, -1.0], dtype=np.float32)


class LabelPolicy:
    """Chunk action i = [obs_t + i, call index]: a test can read which label/chunk ran."""

    def __init__(self, chunk_size: int = 6, prefix_length: int | None = None) -> None:
        self._meta = PolicyMetadata(
            observation_spec={"observation.state": FeatureSpec((1,), "float32")},
            action_dim=2, chunk_size=chunk_size, fps=10.0, policy_type="label", prefix_length=prefix_length,
        )
        self.calls = 0
        self.prefixes = []
        self.resets = 0

    @property
    def metadata(self):
        return self._meta

    def predict_chunk(self, obs_batch, prefix=None):
        t = float(obs_batch["observation.state"][0, 0])
        h = self._meta.chunk_size
        chunk = np.stack([np.arange(h) + t, np.full(h, self.calls)], axis=1).astype(np.float32)
        self.calls += 1
        self.prefixes.append(prefix)
        return chunk[None]

    def reset(self):
        self.resets += 1
        self.calls = 0
