"""MetaWorld adapter: seeding, observation contract, success/termination, snapshot/restore."""

from __future__ import annotations

from dataclasses import dataclass, field

import draccus
import numpy as np
import pytest

from chunkwise.envs import EnvConfig, MetaWorldEnvConfig, env_types, make_env
from chunkwise.envs.metaworld import MetaWorldEnv, task_names
from chunkwise.types import check_observation


def test_registry_and_cli_parsing():
    assert "metaworld" in env_types()

    @dataclass
    class Cfg:
        env: EnvConfig = field(default_factory=MetaWorldEnvConfig)

    cfg = draccus.parse(Cfg, args=["--env.type=metaworld", "--env.task=reach-v3", "--env.cameras=[corner2]"])
    assert isinstance(cfg.env, MetaWorldEnvConfig)
    assert cfg.env.task == "reach-v3" and cfg.env.cameras == ["corner2"] and cfg.env.type == "metaworld"
    assert len(task_names()) == 50


def test_unknown_task_lists_close_names():
    with pytest.raises(ValueError, match="unknown MetaWorld task 'psh-v3'") as err:
        MetaWorldEnvConfig(task="psh-v3")
    assert "Closest valid names: push-v3" in str(err.value)
    with pytest.raises(ValueError, match="camera"):
        MetaWorldEnvConfig(cameras=["nope"])
    with pytest.raises(ValueError, match="max_episode_steps"):
        MetaWorldEnvConfig(max_episode_steps=0)


def test_reset_is_deterministic_and_obs_contract():
    with make_env(MetaWorldEnvConfig(task="push-v3")) as env:
        assert isinstance(env, MetaWorldEnv)
        a = env.reset(seed=7)
        b = env.reset(seed=7)
        c = env.reset(seed=8)
        check_observation(a, env.observation_spec)
        assert a["observation.state"].dtype == np.float32 and a["observation.state"].shape == (39,)
        assert a["task"] == "push-v3"
        np.testing.assert_array_equal(a["observation.state"], b["observation.state"])
        assert not np.array_equal(a["observation.state"][36:], c["observation.state"][36:])  # goal differs
        obs, reward, terminated, truncated, info = env.step(env.idle_action())
        assert isinstance(info["success"], bool) and isinstance(reward, float)
        assert not terminated and not truncated


def test_expert_succeeds_terminates_and_truncation():
    with make_env(MetaWorldEnvConfig(task="reach-v3")) as env:
        obs = env.reset(seed=0)
        for _ in range(200):
            obs, _, terminated, truncated, info = env.step(env.expert_action(obs))
            if terminated:
                break
        assert terminated and info["success"] and not truncated
    with make_env(MetaWorldEnvConfig(task="reach-v3", max_episode_steps=5)) as env:
        env.reset(seed=0)
        flags = [env.step(env.idle_action())[3] for _ in range(5)]
        assert flags == [False] * 4 + [True]
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(env.idle_action())


def test_idle_action_holds_gripper():
    with make_env(MetaWorldEnvConfig(task="reach-v3")) as env:
        env.reset(seed=0)
        idle = env.idle_action()
        assert idle.dtype == np.float32 and idle.shape == (4,)
        np.testing.assert_array_equal(idle, [0, 0, 0, -1])  # reset commands the fingers open
        env.step(np.array([0.5, 0, 0, 0.8], dtype=np.float32))
        np.testing.assert_array_equal(env.idle_action(), np.float32([0, 0, 0, 0.8]))


def test_snapshot_restore_is_bit_exact():
    with make_env(MetaWorldEnvConfig(task="pick-place-v3", terminate_on_success=False)) as env:
        obs = env.reset(seed=3)
        for _ in range(20):
            obs, *_ = env.step(env.expert_action(obs))
        snap = env.snapshot()

        def roll():
            out = []
            for _ in range(30):
                o, r, term, trunc, info = env.step(env.expert_action())
                out.append((env.raw_observation(), o["observation.state"], r, info["success"], env.elapsed_steps))
            return out

        first = roll()
        env.restore(snap)
        np.testing.assert_array_equal(env.elapsed_steps, 20)
        second = roll()
        for x, y in zip(first, second):
            np.testing.assert_array_equal(x[0], y[0])
            np.testing.assert_array_equal(x[1], y[1])
            assert x[2:] == y[2:]
        with make_env(MetaWorldEnvConfig(task="pick-place-v3")) as other:
            with pytest.raises(ValueError, match="not taken from this environment"):
                other.restore(snap)


def test_camera_images_upright_uint8():
    try:
        env = make_env(MetaWorldEnvConfig(task="reach-v3", cameras=["corner2"], image_size=32))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"offscreen rendering (MUJOCO_GL=egl) unavailable: {exc}")
    with env:
        obs = env.reset(seed=0)
        img = obs["observation.images.corner2"]
        assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
        check_observation(obs, env.observation_spec)
        # Upright: empty sky (black, skybox off for speed) at the top, floor and robot base
        # at the bottom. Upside down (MetaWorld's raw corner2) it is the other way round.
        assert img[:4].mean() < 5 < img[-4:].mean()
        obs2, *_ = env.step(env.expert_action(obs))
        assert not np.array_equal(obs2["observation.images.corner2"], img)  # the arm moved


def test_action_repeat_holds_each_action_for_k_metaworld_steps():
    """One outer step with action_repeat=2 is two MetaWorld steps of the same action:
    same state, summed reward; the step budget and fps count outer steps."""
    with pytest.raises(ValueError, match="action_repeat"):
        MetaWorldEnvConfig(action_repeat=0)
    with pytest.raises(ValueError, match="path limit"):
        MetaWorldEnvConfig(max_episode_steps=300, action_repeat=2)
    a = np.array([0.3, -0.2, 0.1, 1.0], dtype=np.float32)
    with make_env(MetaWorldEnvConfig(task="push-v3", max_episode_steps=6)) as once, \
            make_env(MetaWorldEnvConfig(task="push-v3", max_episode_steps=3, action_repeat=2)) as twice:
        assert twice.fps == once.fps / 2
        once.reset(seed=5)
        twice.reset(seed=5)
        for k in range(3):
            _, r1, *_ = once.step(a)
            o1, r2, *_ = once.step(a)
            o2, r, terminated, truncated, _ = twice.step(a)
            np.testing.assert_array_equal(o1["observation.state"], o2["observation.state"])
            assert r == pytest.approx(r1 + r2)
            assert twice.elapsed_steps == k + 1
        assert truncated and not terminated
