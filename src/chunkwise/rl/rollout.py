"""Online rollouts and evaluation through ``VirtualClockExecutor`` in sync mode.

Executing a chunk open-loop for H steps per decision is exactly the executor's ``sync``
strategy with ``actions_per_chunk = n_action_steps = H`` and delay 0: the queue is empty
at every decision step, so nothing is merged and no step idles::

    t         0  1  2  3  4 | 5  6  7  8  9 | 10 ...      (H = 5)
    request   o0            | o5            | o10
    executed  c0 c0 c0 c0 c0| c1 c1 c1 c1 c1| c2

The executor does not keep observations, so ``RecordingEnv`` wraps the env and records
(s_t, a_t, r_t, s_{t+1}) for the replay; the same record provides the observation history
of ``sequence_act``. Rewards are transformed here:

    sparse:  r_t = success_{t+1} - 1   (0 on the success step, -1 before; OGBench/Q-chunking)
    dense:   r_t = reward_scale * MetaWorld reward
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from chunkwise.envs.base import ChunkEnv
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.proposal import committed_prefix
from chunkwise.rl.replay import Episode
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.virtual_clock import Rollout, VirtualClockExecutor
from chunkwise.types import OBS_STATE, FeatureSpec, Observation, ObservationBatch, PolicyMetadata, Prefix


def transform_reward(reward: float, success: bool, reward_type: str, reward_scale: float) -> float:
    if reward_type == "sparse":
        return float(success) - 1.0
    if reward_type == "dense":
        return reward_scale * float(reward)
    raise ValueError(f"reward_type={reward_type!r} is not valid; choose one of ['sparse', 'dense']")


class RecordingEnv(ChunkEnv):
    """Delegates to ``env`` and records the transitions of the current episode."""

    def __init__(self, env: ChunkEnv, reward_type: str = "sparse", reward_scale: float = 1.0) -> None:
        self.env = env
        self.reward_type, self.reward_scale = reward_type, reward_scale
        self.task, self.fps, self.max_episode_steps = env.task, env.fps, env.max_episode_steps
        self.action_dim, self.observation_spec = env.action_dim, env.observation_spec
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminated = False

    def reset(self, seed: int | None = None) -> Observation:
        obs = self.env.reset(seed=seed)
        self.states = [np.asarray(obs[OBS_STATE], np.float32)]
        self.actions, self.rewards, self.terminated = [], [], False
        return obs

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.actions.append(np.asarray(action, np.float32))
        self.rewards.append(transform_reward(reward, bool(info.get("success")), self.reward_type, self.reward_scale))
        self.states.append(np.asarray(obs[OBS_STATE], np.float32))
        self.terminated = bool(terminated)
        return obs, reward, terminated, truncated, info

    def idle_action(self) -> np.ndarray:
        return self.env.idle_action()

    def history(self, length: int) -> np.ndarray:
        """(length, S): the last ``length`` states, padded with the first at the episode start."""
        idx = np.clip(np.arange(len(self.states) - length, len(self.states)), 0, None)
        return np.stack([self.states[i] for i in idx])

    def episode(self) -> Episode:
        s = np.stack(self.states)
        return Episode(s[:-1], np.stack(self.actions), np.asarray(self.rewards), s[1:], self.terminated)

    def close(self) -> None:
        self.env.close()


def _needs_prefix(learner: ChunkSAC) -> bool:
    return learner.cfg.reference_policy != "none" and learner.cfg.rollout_delay > 0


class LearnerPolicy:
    """The learner's actor as a ``Policy`` (stochastic for exploration, or tanh(mean))."""

    def __init__(self, learner: ChunkSAC, recorder: RecordingEnv, fps: float, deterministic: bool = False) -> None:
        self.learner, self.recorder, self.deterministic = learner, recorder, deterministic
        self._metadata = PolicyMetadata(
            observation_spec={OBS_STATE: FeatureSpec((learner.obs_dim,), "float32")},
            action_dim=learner.action_dim,
            chunk_size=learner.cfg.chunk_size,
            fps=fps,
            policy_type=f"rl_{learner.cfg.actor}",
            # IBRL under delay scores both proposals after the committed prefix, so it asks for it
            prefix_length=learner.cfg.rollout_delay if _needs_prefix(learner) else None,
        )

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        hist = self.recorder.history(self.learner.cfg.obs_history_length)
        if not np.array_equal(hist[-1], np.asarray(obs_batch[OBS_STATE][0], np.float32)):
            raise RuntimeError("recorder is out of sync with the executor's observation")
        if prefix is not None and prefix[0] is not None and _needs_prefix(self.learner):
            # SAC actors do not condition on the queue; only the IBRL choice reads it
            committed = committed_prefix(prefix[0], self.recorder.idle_action())
            return self.learner.act(hist, deterministic=self.deterministic, prefix=committed)[None]
        return self.learner.act(hist, deterministic=self.deterministic)[None]

    def reset(self) -> None:
        pass


class ChunkRunner:
    """One env + executor pair reused for every online episode and every evaluation."""

    def __init__(self, env: ChunkEnv, learner: ChunkSAC, reward_type: str = "sparse", reward_scale: float = 1.0,
                 execution: ExecutionConfig | None = None, delay: int = 0) -> None:
        """``execution``/``delay``: how chunks run (default: sync, open-loop H steps, d = 0;
        ``rl.delayed.make_runner`` passes the async executor under delay)."""
        h = learner.cfg.chunk_size
        self.recorder = RecordingEnv(env, reward_type, reward_scale)
        self.policy = LearnerPolicy(learner, self.recorder, env.fps)
        cfg = execution or ExecutionConfig(strategy="sync", actions_per_chunk=h, n_action_steps=h, record_trace=False)
        self.executor = VirtualClockExecutor(self.recorder, self.policy, cfg, delay=delay)

    def run(self, seed: int, deterministic: bool) -> tuple[Rollout, Episode]:
        self.policy.deterministic = deterministic
        rollout = self.executor.run_episode(seed)
        return rollout, self.recorder.episode()

    def evaluate(self, seeds: Sequence[int]) -> dict[str, float]:
        """Success rate, mean return (transformed reward) and steps over deterministic episodes."""
        succ, rets, steps = [], [], []
        for s in seeds:
            r, ep = self.run(int(s), deterministic=True)
            succ.append(r.success)
            rets.append(float(ep.rewards.sum()))
            steps.append(r.steps)
        return {
            "success_rate": float(np.mean(succ)),
            "return": float(np.mean(rets)),
            "episode_steps": float(np.mean(steps)),
            "n_episodes": float(len(seeds)),
        }

    def close(self) -> None:
        self.recorder.close()
