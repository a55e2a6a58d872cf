"""RL under delay (rl/delayed.py): the recorded transition on a hand-made timeline, the
critic's executed window, and RL through the async executor on a tiny fast task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.rl.config import SACConfig
from chunkwise.rl.delayed import make_runner, rollout_execution
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.replay import EpisodeReplay
from chunkwise.rl.train import RLConfig, RLTrainer
from chunkwise.types import OBS_STATE, FeatureSpec

IDLE = -1.0


class StepEnv(ChunkEnv):
    """State = [t]; reward = the executed action's value, so rewards name the executed action."""

    def __init__(self, max_episode_steps: int = 12) -> None:
        self.task, self.fps, self.max_episode_steps, self.action_dim = "steps", 10.0, max_episode_steps, 1
        self.observation_spec = {OBS_STATE: FeatureSpec((1,), "float32")}
        self.t = 0

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        self.t = 0
        return {OBS_STATE: np.array([0.0], np.float32)}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self.t += 1
        obs = {OBS_STATE: np.array([self.t], np.float32)}
        return obs, float(action[0]), False, self.t >= self.max_episode_steps, {"success": False}

    def idle_action(self) -> np.ndarray:
        return np.array([IDLE], np.float32)

    def close(self) -> None:
        pass


class ChunkCounter:
    """Stands in for ``ChunkSAC`` in the runner: chunk k (0, 1, ...) is [10(k+1) + i]_i."""

    def __init__(self, cfg: SACConfig) -> None:
        self.cfg, self.obs_dim, self.action_dim, self.calls = cfg, 1, 1, 0

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        self.calls += 1
        return (10.0 * self.calls + np.arange(self.cfg.chunk_size, dtype=np.float32))[:, None]


def _run(strategy: str, d: int = 2, h: int = 5, steps: int = 12):  # noqa: ANN202
    cfg = SACConfig(actor="mlp", chunk_size=h, rollout_delay=d, rollout_strategy=strategy)
    runner = make_runner(StepEnv(steps), ChunkCounter(cfg), reward_type="dense", reward_scale=1.0, record_trace=True)
    rollout, ep = runner.run(seed=0, deterministic=True)
    replay = EpisodeReplay(100, 1, 1, prefix_length=d)
    replay.add_episode(ep)
    return cfg, rollout, ep, replay


def test_latest_only_transition_holds_the_executed_prefix_and_the_executed_rewards() -> None:
    """The module docstring's timeline (H = 5, d = 2, latest_only, g = 0.5)."""
    cfg, rollout, ep, replay = _run("latest_only")
    assert np.flatnonzero(rollout.trace.request).tolist() == [0, 3, 6, 9]
    #               t: 0     1     2   3   4   5   6   7   8   9   10  11
    executed = [IDLE, IDLE, 12, 13, 14, 22, 23, 24, 32, 33, 34, 42]
    assert ep.actions[:, 0].tolist() == executed
    assert ep.rewards.tolist() == executed  # r_t of the action executed at t
    assert rollout.trace.stall.tolist() == [True, True] + [False] * 10

    gamma = 0.9
    b = replay.gather(np.array([3, 0, 9]), chunk_size=5, gamma=gamma, history=1)
    # request at t = 3 (s3, chunk c1 = 20..24): prefix = the previous chunk's c0_3 c0_4
    assert b["obs"][0, -1].tolist() == [3.0]
    assert b["prefix"][0, :, 0].tolist() == [13, 14]
    assert b["chunk"][0, :, 0].tolist() == [13, 14, 22, 23, 24]
    assert b["rewards"][0].tolist() == [13, 14, 22, 23, 24]
    assert b["discounted_return"][0] == pytest.approx(sum(gamma**i * r for i, r in enumerate([13, 14, 22, 23, 24])))
    assert b["valid"][0] == 5 and b["bootstrap_discount"][0] == pytest.approx(gamma**5)
    assert b["next_obs"][0, -1].tolist() == [8.0]
    assert b["next_prefix"][0, :, 0].tolist() == [32, 33]  # what runs while s8's chunk is computed
    # the first request: the prefix is the two idle (stall) steps
    assert b["prefix"][1, :, 0].tolist() == [IDLE, IDLE]
    assert b["rewards"][1].tolist() == [IDLE, IDLE, 12, 13, 14]
    # a window reaching the episode end (k = 3): padding, rewards 0, next prefix = last action
    assert b["valid"][2] == 3
    assert b["chunk"][2, :, 0].tolist() == [33, 34, 42, 42, 42]
    assert b["rewards"][2].tolist() == [33, 34, 42, 0, 0]
    assert b["next_prefix"][2, :, 0].tolist() == [42, 42]

    # the learner's Q(s, prefix, A): prefix + A[d:], which at a request step is the executed window
    learner = ChunkSAC(cfg, obs_dim=1, action_dim=1)
    c1 = torch.arange(20.0, 25.0).reshape(1, 5, 1)
    window = learner._with_prefix(torch.as_tensor(b["prefix"][:1]), c1)
    assert window[0, :, 0].tolist() == b["chunk"][0, :, 0].tolist()


def test_sync_under_delay_idles_the_prefix_then_runs_the_chunk_from_its_first_action() -> None:
    cfg, rollout, ep, replay = _run("sync", steps=14)
    assert np.flatnonzero(rollout.trace.request).tolist() == [0, 7]
    assert ep.actions[:, 0].tolist() == [IDLE, IDLE, 10, 11, 12, 13, 14, IDLE, IDLE, 20, 21, 22, 23, 24]
    b = replay.gather(np.array([7]), chunk_size=5, gamma=0.9, history=1)
    assert b["prefix"][0, :, 0].tolist() == [IDLE, IDLE]
    assert b["rewards"][0].tolist() == [IDLE, IDLE, 20, 21, 22]
    assert cfg.executed_offset == 0
    learner = ChunkSAC(cfg, obs_dim=1, action_dim=1)
    c1 = torch.arange(20.0, 25.0).reshape(1, 5, 1)
    assert learner._with_prefix(torch.as_tensor(b["prefix"]), c1)[0, :, 0].tolist() == b["chunk"][0, :, 0].tolist()


def test_rollout_config_is_what_eval_builds_and_bad_choices_fail() -> None:
    ex = rollout_execution(SACConfig(chunk_size=10, rollout_delay=4, rollout_strategy="latest_only"))
    assert (ex.strategy, ex.aggregate_fn_name, ex.actions_per_chunk, ex.chunk_size_threshold) == (
        "async", "latest_only", 10, 0.5)
    with pytest.raises(ValueError, match="rollout_strategy"):
        SACConfig(rollout_strategy="latest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        SACConfig(chunk_size=5, rollout_delay=5)
    with pytest.raises(ValueError, match="critic=chunk"):
        SACConfig(critic="first_action", rollout_delay=2)


def test_update_under_delay_uses_prefix_and_next_prefix() -> None:
    cfg, _, _, replay = _run("latest_only", steps=30)
    cfg = SACConfig(actor="mlp", chunk_size=5, rollout_delay=2, rollout_strategy="latest_only", batch_size=8,
                    critic_net=SACConfig().critic_net.__class__(hidden_dims=(16,)))
    learner = ChunkSAC(cfg, obs_dim=1, action_dim=1)
    b = replay.sample(8, 5, 0.9, 1, np.random.default_rng(0))
    stats = learner.update(b)
    assert np.isfinite(stats["critic_loss"]) and np.isfinite(stats["actor_loss"])
    # the bootstrap changes with the next prefix (the critic conditions on it)
    t = {k: torch.as_tensor(v) for k, v in b.items()}
    torch.manual_seed(0)
    y0 = learner.compute_target(t)
    t["next_prefix"] = t["next_prefix"] + 5.0
    torch.manual_seed(0)
    assert not torch.allclose(y0, learner.compute_target(t))


# ---------------------------------------------------------------------------- tiny task
class PointEnv(ChunkEnv):
    """2-D point to a goal: x += 0.1 a, success within 0.1 of the goal; dense reward -|x - g|."""

    def __init__(self, max_episode_steps: int = 30) -> None:
        self.task, self.fps, self.max_episode_steps, self.action_dim = "point", 10.0, max_episode_steps, 2
        self.observation_spec = {OBS_STATE: FeatureSpec((4,), "float32")}
        self.x = self.g = np.zeros(2)
        self.t = 0

    def _obs(self) -> dict[str, Any]:
        return {OBS_STATE: np.concatenate([self.x, self.g]).astype(np.float32)}

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        self.x, self.g, self.t = rng.uniform(-0.5, 0.5, 2), rng.uniform(-0.5, 0.5, 2), 0
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self.x = np.clip(self.x + 0.1 * np.clip(action, -1, 1), -1, 1)
        self.t += 1
        dist = float(np.linalg.norm(self.x - self.g))
        ok = dist < 0.1
        return self._obs(), -dist, ok, self.t >= self.max_episode_steps, {"success": ok}

    def idle_action(self) -> np.ndarray:
        return np.zeros(2, np.float32)

    def close(self) -> None:
        pass


@EnvConfig.register_subclass("point_delay_test")
@dataclass
class PointEnvConfig(EnvConfig):
    task: str = "point"
    fps: float = 10.0
    max_episode_steps: int = 30

    def make(self) -> ChunkEnv:
        return PointEnv(self.max_episode_steps)


def test_rl_through_the_async_executor_improves_a_tiny_task(tmp_path: Path) -> None:
    """Random mlp actor, no demos, d = 2, latest_only: SAC on the executed windows must raise
    deterministic success on 20 fixed seeds (evaluated at the same delay)."""
    cfg = RLConfig(
        env=PointEnvConfig(), actor="mlp", critic="chunk", chunk_size=5, rollout_delay=2,
        rollout_strategy="latest_only", online_steps=2400, eval_every=2400, eval_episodes=20, utd_ratio=0.5,
        batch_size=64, reward_type="dense", reward_scale=1.0, seed=0, progress=False, output_dir=str(tmp_path),
        actor_lr=1e-3, critic_lr=1e-3, critic_net=SACConfig().critic_net.__class__(hidden_dims=(64, 64)),
        actor_net=SACConfig().actor_net.__class__(hidden_dims=(64, 64)),
    )
    trainer = RLTrainer(cfg)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["final_success"] >= summary["initial_success"] + 0.3, summary


def test_eval_under_delay_reproduces_the_runs_own_evaluation(tmp_path: Path) -> None:
    """The run's evaluation at d = 2 (latest_only) is ``chunkwise eval --strategy=latest_only
    --inference_delay=2`` of its run directory, episode lengths included."""
    import json

    from chunkwise.eval.run import main as eval_main
    from chunkwise.rl.train import main as rl_main

    env = ["--env.type=metaworld", "--env.task=reach-v3", "--env.max_episode_steps=60"]
    run = tmp_path / "run"
    assert rl_main([
        *env, "--actor=act", "--critic=chunk", "--chunk_size=5", "--actor_net.dim_model=32",
        "--actor_net.dim_feedforward=64", "--critic_net.hidden_dims=[64,64]", "--batch_size=32",
        "--demos.scripted_episodes=3", "--init.bc_warmstart_steps=300", "--bc_weight=10", "--online_steps=120",
        "--eval_every=120", "--eval_episodes=4", "--rollout_delay=2", "--rollout_strategy=latest_only",
        "--progress=false", f"--output_dir={run}",
    ]) == 0
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x][-1]
    assert eval_main([*env, f"--policy.path={run}", "--strategy=latest_only", "--inference_delay=2",
                      "--n_episodes=4", "--seed=1000000", f"--output_dir={tmp_path / 'eval'}"]) == 0
    res = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert res["summary"]["success_rate"] == pytest.approx(last["success_rate"])
    steps = [e["steps"] for e in res["episodes"]]
    assert np.mean(steps) == pytest.approx(last["episode_steps"])
    assert min(steps) < 60, steps  # some episode ended at success, so equal lengths say something
