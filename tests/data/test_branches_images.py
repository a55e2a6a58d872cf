"""Prefix branches with a camera: every branch frame carries the render of its own state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chunkwise.data.branches import BranchConfig, _BranchRecorder, record_branches
from chunkwise.data.collect import CollectConfig, collect, run_expert_episode
from chunkwise.data.dataset import ChunkDataset
from chunkwise.envs import MetaWorldEnvConfig, make_env
from chunkwise.types import ACTION, OBS_STATE, PREFIX_LENGTH, FeatureSpec

CAM = "observation.images.corner2"
SIZE = 32  # small, but big enough that the goal marker (a few pixels) shows: a stale one would fail here


@pytest.fixture(scope="module")
def cam_env():
    env = make_env(MetaWorldEnvConfig(task="push-v3", cameras=["corner2"], image_size=SIZE))
    yield env
    env.close()


def test_restore_renders_the_restored_state_and_cameras_leave_physics_alone(cam_env, push_env):
    env = cam_env
    obs = env.reset(seed=2)
    snap = env.snapshot()
    for _ in range(5):
        moved, *_ = env.step(env.expert_action())
    assert not np.array_equal(moved[CAM], obs[CAM])
    env.restore(snap)
    # the reset image is the render of the reset state (MetaWorld moves the goal site after its
    # last mj_forward; the adapter refreshes positions for rendering), and restore gives it back
    np.testing.assert_array_equal(env.render("corner2"), obs[CAM])
    # rendering does not change the trajectory: bit-identical to a state-only env's
    plain = push_env.reset(seed=2)
    for _ in range(5):
        a = env.expert_action()
        np.testing.assert_array_equal(a, push_env.expert_action())
        obs, *_ = env.step(a)
        plain, *_ = push_env.step(a)
        np.testing.assert_array_equal(obs[OBS_STATE], plain[OBS_STATE])


def test_branch_images_are_renders_of_its_states(cam_env, monkeypatch):
    requests = []  # the async run's observation at each branching step
    original = _BranchRecorder.predict_chunk

    def spy(self, obs_batch, prefix=None):
        if prefix and prefix[0] is not None and prefix[0].delay > 0:
            requests.append({k: np.array(obs_batch[k][0]) for k in (OBS_STATE, CAM)})
        return original(self, obs_batch, prefix)

    monkeypatch.setattr(_BranchRecorder, "predict_chunk", spy)
    seed = 1
    cfg = BranchConfig(delays=[2, 3], chunk_size=10, length=8, max_steps=30)
    branches = record_branches(cam_env, seed=seed, cfg=cfg)
    assert len(branches) == len(requests) >= 3
    for b, req in zip(branches, requests):
        n = len(b[ACTION])
        assert b[CAM].shape == (n, SIZE, SIZE, 3) and b[CAM].dtype == np.uint8
        assert len({len(v) for v in b.values()}) == 1
        np.testing.assert_array_equal(b[OBS_STATE][0], req[OBS_STATE])
        np.testing.assert_array_equal(b[CAM][0], req[CAM])  # same state -> same render
        d = int(b[PREFIX_LENGTH][0])
        np.testing.assert_array_equal(b[PREFIX_LENGTH], np.maximum(d - np.arange(n), 0))
        assert not all(np.array_equal(b[CAM][0], img) for img in b[CAM][1:])  # frames are not one image repeated

    # the first request is at step 0: its branch starts at the reset state, so it must match the
    # demonstration's first frame, and replaying its actions from a reset renders each frame again
    main, _ = run_expert_episode(cam_env, seed)
    first = branches[0]
    np.testing.assert_array_equal(first[OBS_STATE][0], main[OBS_STATE][0])
    np.testing.assert_array_equal(first[CAM][0], main[CAM][0])
    obs = cam_env.reset(seed=seed)
    for i in range(len(first[ACTION])):
        np.testing.assert_array_equal(obs[OBS_STATE], first[OBS_STATE][i])
        np.testing.assert_array_equal(obs[CAM], first[CAM][i])
        obs, *_ = cam_env.step(first[ACTION][i])


def test_collect_branches_with_camera_reads_back(tmp_path: Path):
    out = tmp_path / "br_cam"
    cfg = CollectConfig(env=MetaWorldEnvConfig(task="push-v3", cameras=["corner2"], image_size=SIZE), n_episodes=1,
                        output_dir=str(out), seed=1, progress=False,
                        branches=BranchConfig(delays=[3], chunk_size=10, length=6, max_steps=30))
    s = collect(cfg)
    assert s.episodes == 1 and s.branches >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["br_cam"]  # the partial dir was renamed into place
    ds = ChunkDataset(out, chunk_size=10)
    assert ds.camera_keys == [CAM] and ds.num_episodes == 1 + s.branches and len(ds) == s.frames
    pl = ds.prefix_length
    assert pl is not None
    (lo0, hi0), *branch_bounds = ds.episode_bounds
    assert not pl[lo0:hi0].any()
    for lo, hi in branch_bounds:
        np.testing.assert_array_equal(pl[lo:hi], np.maximum(3 - np.arange(hi - lo), 0))
        assert ds.get_batch(np.arange(lo, hi))[CAM].shape == (hi - lo, SIZE, SIZE, 3)
    # the first branch starts at step 0: its first image is the demonstration's first image (PNG, lossless)
    lo1 = int(branch_bounds[0][0])
    np.testing.assert_array_equal(ds[lo1][OBS_STATE], ds[int(lo0)][OBS_STATE])
    np.testing.assert_array_equal(ds[lo1][CAM], ds[int(lo0)][CAM])


def test_branches_refuse_observations_they_cannot_record():
    class OddEnv:
        cameras: list[str] = []
        observation_spec = {OBS_STATE: FeatureSpec((3,), "float32"),
                            "observation.environment_state": FeatureSpec((2,), "float32")}

    with pytest.raises(ValueError, match="observation.environment_state"):
        record_branches(OddEnv(), seed=0, cfg=BranchConfig(delays=[2]))
