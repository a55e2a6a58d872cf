"""Offline demonstrations for the replay: from a LeRobot v3 dataset or the scripted expert.

A dataset episode of T frames gives (s_t, a_t, r_t, s_{t+1}) for t < T with
s_{t+1} = observation.state of the next frame. The frame after the last one is not stored:
if the episode ends in success it is a terminal (no bootstrap, its next state is never
used); otherwise the last state is repeated as next state (time-limit truncation).
With ``terminate_on_success`` (the MetaWorld adapter's default, and what online
rollouts do) an episode is cut at its first ``next.success`` frame, so the offline and
online data describe the same MDP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from chunkwise.envs.base import EnvConfig
from chunkwise.envs.registry import make_env
from chunkwise.rl.replay import Episode
from chunkwise.rl.rollout import transform_reward

_COLUMNS = ("observation.state", "action", "next.reward", "next.success", "episode_index", "frame_index")


def _column(table, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    col = table.column(name).combine_chunks()
    if hasattr(col, "flatten") and str(col.type).startswith("fixed_size_list"):
        width = col.type.list_size
        return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, width)
    return np.asarray(col.to_numpy(zero_copy_only=False))


def load_dataset_episodes(
    root: str | Path, reward_type: str = "sparse", reward_scale: float = 1.0, terminate_on_success: bool = True
) -> list[Episode]:
    """Read state/action/reward/success columns of every episode under ``root/data``."""
    root = Path(root)
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root} has no LeRobot v3 data files (expected data/chunk-*/file-*.parquet)")
    cols: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
    for f in files:
        names = set(pq.read_schema(f).names)
        missing = {"observation.state", "action", "episode_index", "frame_index"} - names
        if missing:
            raise ValueError(f"{f} lacks columns {sorted(missing)} needed for RL demonstrations")
        table = pq.read_table(f, columns=[c for c in _COLUMNS if c in names])
        for c in _COLUMNS:
            if c in names:
                cols[c].append(_column(table, c))
    data = {c: np.concatenate(v) for c, v in cols.items() if v}
    if reward_type == "sparse" and "next.success" not in data:
        raise ValueError(f"{root}: reward_type=sparse needs a next.success column; use reward_type=dense")
    if reward_type == "dense" and "next.reward" not in data:
        raise ValueError(f"{root}: reward_type=dense needs a next.reward column")
    episodes = []
    for ep in np.unique(data["episode_index"]):
        sel = np.flatnonzero(data["episode_index"] == ep)
        sel = sel[np.argsort(data["frame_index"][sel])]
        success = data["next.success"][sel].astype(bool) if "next.success" in data else np.zeros(len(sel), bool)
        if terminate_on_success and success.any():
            sel = sel[: int(np.argmax(success)) + 1]
            success = success[: len(sel)]
        states = data["observation.state"][sel]
        raw_r = data["next.reward"][sel] if "next.reward" in data else np.zeros(len(sel))
        rewards = np.array([transform_reward(r, s, reward_type, reward_scale) for r, s in zip(raw_r, success)])
        next_states = np.concatenate([states[1:], states[-1:]])
        terminated = bool(terminate_on_success and success[-1])
        episodes.append(Episode(states, data["action"][sel], rewards, next_states, terminated))
    return episodes


def scripted_episodes(
    env_cfg: EnvConfig, n: int, seed: int, reward_type: str = "sparse", reward_scale: float = 1.0
) -> list[Episode]:
    """``n`` episodes of the env's scripted expert (seeds seed, seed+1, ...), in memory."""
    from chunkwise.rl.rollout import RecordingEnv

    env = make_env(env_cfg)
    if not hasattr(env, "expert_action"):
        raise ValueError(f"env type {env_cfg.type!r} has no scripted expert; pass --demos.root instead")
    rec = RecordingEnv(env, reward_type, reward_scale)
    out = []
    try:
        for i in range(n):
            rec.reset(seed=seed + i)
            for _ in range(env.max_episode_steps):
                _, _, terminated, truncated, _ = rec.step(env.expert_action())  # type: ignore[attr-defined]
                if terminated or truncated:
                    break
            out.append(rec.episode())
    finally:
        rec.close()
    return out
