"""``OraclePolicy``: chunks from rolling the scripted expert forward in the simulator itself.

At ``predict_chunk`` time (the virtual clock calls it at the step the observation is
captured, so the env is exactly in that state):

    snap = env.snapshot()
    for i in 0..H-1:  a_i = expert(state_i); state_{i+1} = env.step(a_i)
    env.restore(snap)                    # bit-exact rewind; the episode is untouched

so chunk action i is what the expert would do at step t+i *if the expert had been in
control from t on*. Executed open loop with no delay it reproduces the expert exactly
(MetaWorld is deterministic); under delay the first d actions of the new chunk are
dropped as stale and the robot is really driven by the old plan meanwhile, so the new
chunk's remaining actions are slightly off-state: exactly the error a perfect model
would make under latency. An upper bound for learned policies.

Prefix-aware variant (``prefix_aware=True``, strategy "oracle_prefix"): it reads the
``Prefix`` the executor passes (the queued actions from the observation step and the
delay d) and first replays the d actions that will really run while it "computes" (the
idle action where the queue has run dry), then hands over to the expert. Its chunk from
t+d on is then the expert's plan from the state the robot will really be in: the ideal
that RTC and the delta expert approximate.

It is bound to one env (batch size 1). Cameras are switched off during the look-ahead:
images are not needed to compute the expert and rendering would dominate the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from chunkwise.types import OBS_STATE, ObservationBatch, PolicyMetadata, Prefix


class OraclePolicy:
    """Policy protocol over an env with ``snapshot / restore / expert_action``."""

    def __init__(self, env: Any, chunk_size: int = 50, prefix_aware: bool = False) -> None:
        for attr in ("snapshot", "restore", "expert_action", "raw_observation"):
            if not hasattr(env, attr):
                raise TypeError(f"OraclePolicy needs an env with {attr}(); {type(env).__name__} has none")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.env = env
        self.chunk_size = int(chunk_size)
        self.prefix_aware = bool(prefix_aware)
        self._metadata = PolicyMetadata(
            observation_spec=dict(env.observation_spec),
            action_dim=int(env.action_dim),
            chunk_size=self.chunk_size,
            fps=float(env.fps),
            policy_type="scripted",
            prefix_length=0 if self.prefix_aware else None,
            extra={"task": getattr(env, "task", ""), "prefix_aware": self.prefix_aware},
        )

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def reset(self) -> None:
        pass

    def predict_chunk(
        self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None
    ) -> np.ndarray:
        state = np.asarray(obs_batch[OBS_STATE])
        if state.ndim != 2 or state.shape[0] != 1:
            raise ValueError(f"OraclePolicy is bound to one env: batch size must be 1, got state shape {state.shape}")
        current = np.asarray(self.env.raw_observation(), dtype=np.float32)
        if not np.array_equal(state[0].astype(np.float32), current):
            # The oracle reads the simulator, not the observation: they must be the same moment.
            raise ValueError("observation does not match the env's current state; the oracle must be "
                             "called at the step the observation was captured")
        frozen: np.ndarray | None = None
        if self.prefix_aware and prefix is not None and prefix[0] is not None:
            frozen = frozen_steps(prefix[0], self.env.action_dim)
        return self._rollout(frozen)[None]

    def with_prefix(self) -> "OraclePolicy":
        """The prefix-aware view of this oracle (same env)."""
        return OraclePolicy(self.env, self.chunk_size, prefix_aware=True)

    def _rollout(self, frozen: np.ndarray | None = None) -> np.ndarray:
        return expert_rollout(self.env, self.chunk_size, frozen).actions


def frozen_steps(prefix: Prefix, action_dim: int) -> np.ndarray:
    """(d, A): the d steps that run before a chunk requested with ``prefix`` can: the queued
    actions, then NaN rows where the queue runs dry (the env idles: a stall)."""
    frozen = np.full((prefix.delay, action_dim), np.nan, dtype=np.float32)
    queued = np.asarray(prefix.actions[: prefix.delay], dtype=np.float32)
    frozen[: len(queued)] = queued
    return frozen


@dataclass
class ExpertRollout:
    """What ``expert_rollout`` saw: ``actions`` (H, A) always; per-step ``states`` /
    ``rewards`` / ``successes`` / ``dones`` only with ``record=True`` (length = steps run)."""

    actions: np.ndarray
    states: np.ndarray | None = None
    rewards: np.ndarray | None = None
    successes: np.ndarray | None = None
    dones: np.ndarray | None = None


def expert_rollout(env: Any, h: int, frozen: np.ndarray | None = None, record: bool = False,
                   stop_on_done: bool = False) -> ExpertRollout:
    """Roll the env forward ``h`` steps in a snapshot, then rewind it bit-exactly.

    Step i runs ``frozen[i]`` while i < len(frozen) (NaN rows = the env's idle action, i.e. a
    stall), then the scripted expert. Without ``record`` the last action is not stepped (only
    its value is needed) and past the env's step limit the chunk is padded with the last action.
    With ``record`` every action is stepped and the observation before it, the reward, success
    and termination after it are kept; ``stop_on_done`` ends the rollout at termination.
    """
    chunk = np.empty((h, env.action_dim), dtype=np.float32)
    states: list[np.ndarray] = []
    rewards: list[float] = []
    successes: list[bool] = []
    dones: list[bool] = []
    snap = env.snapshot()
    cameras = getattr(env, "cameras", None)
    if cameras:
        env.cameras = []
    try:
        limit = getattr(env, "max_episode_steps", None)
        elapsed = getattr(env, "elapsed_steps", None)
        left = h if limit is None or elapsed is None else max(0, limit - elapsed)
        n = 0
        for i in range(h):
            if frozen is not None and i < frozen.shape[0]:
                a = frozen[i]
                if np.isnan(a).any():  # NaN marks a stall step: the env will idle
                    a = np.asarray(env.idle_action(), dtype=np.float32)
            else:
                a = np.asarray(env.expert_action(None), dtype=np.float32)
            chunk[i] = a
            n = i + 1
            if not record and (i + 1 >= h or i + 1 >= left):
                break  # the env cannot step past its limit; the rest is never executed
            if record:
                states.append(np.asarray(env.raw_observation(), dtype=np.float32))
            _, reward, terminated, truncated, info = env.step(a)
            if record:
                rewards.append(float(reward))
                successes.append(bool(info.get("success", False)))
                dones.append(bool(terminated or truncated))
                if truncated or (stop_on_done and terminated):
                    break
        chunk[n:] = chunk[n - 1]  # pad past the episode end with the last action
    finally:
        if cameras:
            env.cameras = cameras
        env.restore(snap)
    if not record:
        return ExpertRollout(chunk)
    return ExpertRollout(chunk[:n], np.stack(states), np.asarray(rewards, np.float32),
                         np.asarray(successes, bool), np.asarray(dones, bool))
