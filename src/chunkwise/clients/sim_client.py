"""``SimClient``: a simulated env driven in real time by a remote policy.

``chunkwise eval --server=localhost:8080 --env.type=metaworld --env.task=push-v3
--n_episodes=10 --actions_per_chunk=50 --chunk_size_threshold=0.5
--aggregate_fn_name=weighted_average`` ends up in :func:`run_eval`. The env steps at its
own fps (times ``time_scale``); inference latency is whatever the server and network
really take, so stalls and stale actions are real, not simulated.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from chunkwise.clients.realtime import ChunkClient, ClientConfig, EpisodeStats, percentiles
from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.envs.base import ChunkEnv

log = logging.getLogger(__name__)


class SimClient:
    """Runs episodes of a ``ChunkEnv`` against a PolicyServer (wall clock, real latency)."""

    def __init__(self, env: ChunkEnv, remote: RemotePolicy, cfg: ClientConfig) -> None:
        md = remote.metadata
        if md.action_dim != env.action_dim:
            raise ValueError(f"policy action_dim {md.action_dim} != env action_dim {env.action_dim}")
        self.env = env
        self.client = ChunkClient(remote, cfg, fps=env.fps)

    def run_episode(self, seed: int | None = None, max_steps: int | None = None, record: bool = False) -> EpisodeStats:
        obs = self.env.reset(seed=seed)
        state: dict[str, Any] = {"obs": obs, "reward": 0.0, "success": False}

        def act(action: np.ndarray, k: int) -> bool:
            o, r, terminated, truncated, info = self.env.step(action)
            state["obs"] = o
            state["reward"] += float(r)
            state["success"] |= bool(info.get("success", False))
            # Stop at the first success: the episode's outcome is decided.
            return bool(terminated or truncated or state["success"])

        stats = self.client.run_episode(
            get_obs=lambda: state["obs"],
            act=act,
            idle_action=self.env.idle_action,
            max_steps=max_steps or self.env.max_episode_steps,
            record=record,
        )
        stats.success = state["success"]
        stats.reward = state["reward"]
        return stats

    def close(self) -> None:
        self.client.close()


def summarize(episodes: list[EpisodeStats]) -> dict[str, Any]:
    rtt = [x for e in episodes for x in e.rtt_ms]
    model = [x for e in episodes for x in e.model_ms]
    server = [x for e in episodes for x in e.server_ms]
    return {
        "n_episodes": len(episodes),
        "success_rate": float(np.mean([e.success for e in episodes])) if episodes else float("nan"),
        "mean_reward": float(np.mean([e.reward for e in episodes])) if episodes else float("nan"),
        "mean_steps": float(np.mean([e.steps for e in episodes])) if episodes else float("nan"),
        "stall_steps": int(sum(e.stalls for e in episodes)),
        "chunks": int(sum(e.chunks for e in episodes)),
        "errors": int(sum(len(e.errors) for e in episodes)),
        "overrun_ticks": int(sum(e.overruns for e in episodes)),
        "round_trip_ms": percentiles(rtt),
        "server_model_ms": percentiles(model),
        "round_trip_minus_server_ms": percentiles([a - b for a, b in zip(rtt, server)]) if len(rtt) == len(server) else {},
    }


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    """Field of the eval config, or of its nested ``execution`` config."""
    if hasattr(cfg, name):
        return getattr(cfg, name)
    exe = getattr(cfg, "execution", None)
    if exe is not None and hasattr(exe, name):
        return getattr(exe, name)
    return default


def run_eval(cfg: Any) -> int:
    """``chunkwise eval --server=...``: print the summary (and write eval.json); exit code."""
    strategy = _get(cfg, "strategy", "async")
    if strategy != "async":
        print(f"chunkwise eval --server: only strategy=async runs against a server (got {strategy!r})")
        return 2
    summary = evaluate_remote(cfg)
    out_dir = _get(cfg, "output_dir", None)
    if out_dir:
        path = Path(out_dir) / "eval.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)
    return 0


def evaluate_remote(cfg: Any) -> dict[str, Any]:
    """Evaluate the policy served at ``cfg.server`` on ``cfg.env`` (see module doc)."""
    from chunkwise.envs import make_env

    client_cfg = ClientConfig(
        actions_per_chunk=_get(cfg, "actions_per_chunk", 50),
        chunk_size_threshold=_get(cfg, "chunk_size_threshold", 0.5),
        aggregate_fn_name=_get(cfg, "aggregate_fn_name", "weighted_average"),
        time_scale=_get(cfg, "time_scale", 1.0),
    )
    n_episodes = int(_get(cfg, "n_episodes", 10))
    seed = int(_get(cfg, "seed", 0))
    token = _get(cfg, "token", None) or None
    env = make_env(cfg.env)
    remote = RemotePolicy(cfg.server, token=token)
    sim = SimClient(env, remote, client_cfg)
    episodes: list[EpisodeStats] = []
    try:
        from tqdm import tqdm

        for ep in tqdm(range(n_episodes), desc=f"eval {cfg.server}", unit="ep"):
            stats = sim.run_episode(seed=seed + ep, max_steps=_get(cfg, "max_steps", None))
            episodes.append(stats)
            log.info("episode %d: success=%s steps=%d stalls=%d", ep, stats.success, stats.steps, stats.stalls)
    finally:
        sim.close()
        remote.close()
        env.close()
    summary = summarize(episodes)
    print(json.dumps(summary, indent=2))
    return summary
