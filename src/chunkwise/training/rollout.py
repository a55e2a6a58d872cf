"""Success rate of a policy at delay 0, synchronous execution: the in-training evaluation.

Synchronous, d = 0, on a virtual clock (control steps, no wall time)::

    step   t ........ t+k-1 | t+k ........ t+2k-1 | ...
    infer  obs_t -> chunk   | obs_{t+k} -> chunk  |
    run    chunk[0..k-1]    | chunk[0..k-1]       |       k = n_action_steps

Uses ``chunkwise.runtime.VirtualClockExecutor`` (strategy ``sync``, delay 0) when that
module is importable; otherwise the small loop below, which implements the same schedule.
Episode seeds start at ``seed_offset`` so they do not overlap the demo seeds (0, 1, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chunkwise.envs.base import EnvConfig
from chunkwise.policies.common.compat import check_compatible
from chunkwise.types import stack_observations

EVAL_SEED_OFFSET = 100_000


@dataclass
class EvalResult:
    success_rate: float
    mean_return: float
    mean_steps: float
    n_episodes: int

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {
            f"{prefix}success_rate": self.success_rate,
            f"{prefix}mean_return": self.mean_return,
            f"{prefix}mean_steps": self.mean_steps,
            f"{prefix}n_episodes": float(self.n_episodes),
        }


def evaluate_sync(
    policy, env_cfg: EnvConfig, n_episodes: int, n_action_steps: int, seed_offset: int = EVAL_SEED_OFFSET
) -> EvalResult:
    """Run ``n_episodes`` episodes; success = ``info["success"]`` at any step."""
    env = env_cfg.make()
    try:
        check_compatible(policy.metadata, env)
        try:
            from chunkwise.runtime.config import ExecutionConfig
            from chunkwise.runtime.virtual_clock import VirtualClockExecutor
        except ImportError:
            return evaluate_loop(policy, env, n_episodes, n_action_steps, seed_offset)
        cfg = ExecutionConfig(
            strategy="sync",
            actions_per_chunk=policy.metadata.chunk_size,
            n_action_steps=n_action_steps,
            record_trace=False,
        )
        executor = VirtualClockExecutor(env, policy, cfg, delay=0)
        rollouts = [executor.run_episode(seed_offset + ep) for ep in range(n_episodes)]
        return EvalResult(
            float(np.mean([r.success for r in rollouts])),
            float(np.mean([r.episode_return for r in rollouts])),
            float(np.mean([r.steps for r in rollouts])),
            n_episodes,
        )
    finally:
        env.close()


def evaluate_loop(policy, env, n_episodes: int, n_action_steps: int, seed_offset: int) -> EvalResult:
    """The same schedule without the runtime package (kept so training never depends on it)."""
    successes, returns, steps = [], [], []
    for ep in range(n_episodes):
        policy.reset()
        obs = env.reset(seed=seed_offset + ep)
        total, success, t = 0.0, False, 0
        done = False
        while not done and t < env.max_episode_steps:
            chunk = policy.predict_chunk(stack_observations([obs]))[0]
            for action in chunk[:n_action_steps]:
                obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
                total += float(reward)
                success = success or bool(info.get("success", False))
                t += 1
                if terminated or truncated or t >= env.max_episode_steps:
                    done = True
                    break
        successes.append(success)
        returns.append(total)
        steps.append(t)
    return EvalResult(float(np.mean(successes)), float(np.mean(returns)), float(np.mean(steps)), n_episodes)
