"""``chunkwise bench scheduler``: what the scheduler costs per control step.

Runs the real ``VirtualClockExecutor`` loop (trigger, merge with every aggregate, clocked
pop, trace recording) against a null env and a constant policy that cost ~nothing, so the
measured time per step is the scheduling overhead. Compares it with the time of one real
MetaWorld step (adapter ``env.step``, no cameras) on the same machine. Timing uses
``time.perf_counter`` over many steps and reports the best of ``repeats`` runs (the
least disturbed by other processes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from chunkwise.envs.base import ChunkEnv
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.virtual_clock import VirtualClockExecutor
from chunkwise.types import FeatureSpec, PolicyMetadata


@dataclass
class SchedulerBenchConfig:
    task: str = "push-v3"
    steps: int = 20000  # control steps per scheduler measurement
    env_steps: int = 2000  # MetaWorld steps for the reference
    repeats: int = 3
    actions_per_chunk: int = 50
    chunk_size_threshold: float = 0.5
    delay: int = 4
    aggregates: str = "latest_only,weighted_average,average,conservative,temporal_ensemble"

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.env_steps <= 0 or self.repeats <= 0:
            raise ValueError("steps, env_steps and repeats must be positive")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")


class _NullEnv(ChunkEnv):
    def __init__(self, max_steps: int, state_dim: int = 39, action_dim: int = 4) -> None:
        self.task, self.fps, self.max_episode_steps, self.action_dim = "null", 80.0, max_steps, action_dim
        self.observation_spec = {"observation.state": FeatureSpec((state_dim,), "float32")}
        self._obs = {"observation.state": np.zeros(state_dim, np.float32), "task": "null"}
        self._info = {"success": False}
        self._idle = np.zeros(action_dim, np.float32)

    def reset(self, seed=None):
        return self._obs

    def step(self, action):
        return self._obs, 0.0, False, False, self._info

    def idle_action(self):
        return self._idle


class _ConstPolicy:
    def __init__(self, h: int, a: int = 4, s: int = 39) -> None:
        self._chunk = np.random.default_rng(0).uniform(-1, 1, (1, h, a)).astype(np.float32)
        self._meta = PolicyMetadata({"observation.state": FeatureSpec((s,), "float32")}, a, h, 80.0, "const")

    @property
    def metadata(self):
        return self._meta

    def predict_chunk(self, obs_batch, prefix=None):
        return self._chunk

    def reset(self):
        pass


def scheduler_us_per_step(cfg: SchedulerBenchConfig, aggregate: str) -> float:
    env = _NullEnv(cfg.steps)
    pol = _ConstPolicy(cfg.actions_per_chunk)
    ex_cfg = ExecutionConfig(strategy="async", aggregate_fn_name=aggregate, actions_per_chunk=cfg.actions_per_chunk,
                             chunk_size_threshold=cfg.chunk_size_threshold)
    ex = VirtualClockExecutor(env, pol, ex_cfg, cfg.delay)
    best = float("inf")
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        r = ex.run_episode(0)
        best = min(best, (time.perf_counter() - t0) / r.steps)
    return best * 1e6


def metaworld_us_per_step(cfg: SchedulerBenchConfig) -> float:
    from chunkwise.envs import MetaWorldEnvConfig, make_env

    env = make_env(MetaWorldEnvConfig(task=cfg.task, terminate_on_success=False))
    try:
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (cfg.env_steps, env.action_dim)).astype(np.float32)
        best = float("inf")
        for _ in range(cfg.repeats):
            total = 0.0
            for start in range(0, cfg.env_steps, env.max_episode_steps):  # resets are not timed
                env.reset(seed=start)
                block = actions[start:start + env.max_episode_steps]
                t0 = time.perf_counter()
                for a in block:
                    env.step(a)
                total += time.perf_counter() - t0
            best = min(best, total / cfg.env_steps)
    finally:
        env.close()
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(SchedulerBenchConfig, argv, "bench scheduler")
    except CLIError:
        return 2
    env_us = metaworld_us_per_step(cfg)
    print(f"MetaWorld {cfg.task} env.step (no cameras): {env_us:8.1f} us/step")
    print(f"scheduler (VirtualClockExecutor loop, null env, constant policy; H=apc={cfg.actions_per_chunk}, "
          f"g={cfg.chunk_size_threshold}, d={cfg.delay}):")
    worst = 0.0
    for agg in [a.strip() for a in cfg.aggregates.split(",") if a.strip()]:
        us = scheduler_us_per_step(cfg, agg)
        pct = 100.0 * us / env_us
        worst = max(worst, pct)
        print(f"  {agg:<18} {us:8.2f} us/step  = {pct:5.2f}% of an env step")
    verdict = "OK" if worst < 2.0 else "ABOVE TARGET"
    print(f"worst overhead {worst:.2f}% (target < 2%): {verdict}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
