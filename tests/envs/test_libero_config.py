"""LIBERO config and registry: no simulator needed (runs without the ``.[libero]`` extra)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

import draccus
import pytest

from chunkwise.envs import EnvConfig, LiberoEnvConfig, MetaWorldEnvConfig, env_types
from chunkwise.envs import libero as libero_mod


def test_registered_and_parsed_from_the_cli():
    assert "libero" in env_types()

    @dataclass
    class Cfg:
        env: EnvConfig = field(default_factory=MetaWorldEnvConfig)

    cfg = draccus.parse(Cfg, args=["--env.type=libero", "--env.task=libero_10", "--env.task_id=3",
                                   "--env.cameras=[]"])
    assert isinstance(cfg.env, LiberoEnvConfig) and cfg.env.type == "libero"
    assert (cfg.env.task, cfg.env.task_id, cfg.env.cameras) == ("libero_10", 3, [])
    assert cfg.env.max_episode_steps == 520 and cfg.env.fps == 20.0


def test_suite_step_limits_and_defaults():
    limits = {s: LiberoEnvConfig(task=s).max_episode_steps for s in libero_mod.SUITE_MAX_STEPS}
    assert limits == {"libero_spatial": 280, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                      "libero_90": 400}
    cfg = LiberoEnvConfig()
    assert cfg.cameras == ["image", "image2"] and cfg.settle_steps == 10
    assert LiberoEnvConfig(task="libero_goal", max_episode_steps=50).max_episode_steps == 50


def test_suite_limit_follows_the_task_through_replace():
    """``chunkwise sweep --tasks=libero_spatial`` replaces the task of a parsed config."""
    from dataclasses import replace

    spatial = replace(LiberoEnvConfig(), task="libero_spatial")  # default task libero_10 (520)
    assert spatial.max_episode_steps == 280
    assert replace(spatial, task="libero_goal").max_episode_steps == 300
    by_hand = LiberoEnvConfig(task="libero_10", max_episode_steps=60)
    assert replace(by_hand, task="libero_spatial").max_episode_steps == 60


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "libero_100"}, "unknown LIBERO suite 'libero_100'"),
    ({"task": "libero_10", "task_id": 10}, r"task_id must be in 0\.\.9"),
    ({"task": "libero_90", "task_id": 90}, r"task_id must be in 0\.\.89"),
    ({"cameras": ["agentview"]}, "unknown LIBERO camera 'agentview'.*image \\(agentview\\)"),
    ({"cameras": ["image", "image"]}, "duplicates"),
    ({"max_episode_steps": -1}, "max_episode_steps"),
])
def test_bad_config_is_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LiberoEnvConfig(**kwargs)


def test_missing_extra_names_it(monkeypatch):
    real_import = builtins.__import__

    def no_libero(name, *args, **kwargs):
        if name == "libero" or name.startswith("libero."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_libero)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[libero\]'"):
        LiberoEnvConfig(task="libero_object", cameras=[]).make()
    assert libero_mod.libero_available() is False


def test_quat2axisangle_matches_robosuite_convention():
    import math

    import numpy as np

    # 90 degrees about z, (x, y, z, w) order
    q = np.array([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    np.testing.assert_allclose(libero_mod.quat2axisangle(q), [0, 0, math.pi / 2], atol=1e-12)
    np.testing.assert_array_equal(libero_mod.quat2axisangle(np.array([0.0, 0, 0, 1])), np.zeros(3))
    raw = {"robot0_eef_pos": np.array([0.1, 0.2, 0.3]), "robot0_eef_quat": q,
           "robot0_gripper_qpos": np.array([0.04, -0.04])}
    np.testing.assert_allclose(libero_mod.state_vector(raw), [0.1, 0.2, 0.3, 0, 0, math.pi / 2, 0.04, -0.04])
