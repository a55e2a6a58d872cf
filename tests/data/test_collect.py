"""chunkwise collect: layout, contents, stats, determinism, and bad-input behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunkwise.data.collect import CollectConfig, collect, collect_demonstrations, main
from chunkwise.data.dataset import ChunkDataset
from chunkwise.envs import MetaWorldEnvConfig
from chunkwise.envs.metaworld import MetaWorldEnv

FIXTURE = Path(__file__).parents[1] / "fixtures" / "lerobot-v3-tiny"
DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _cfg(out: Path, **kw) -> CollectConfig:
    env = kw.pop("env", MetaWorldEnvConfig(task="reach-v3"))
    return CollectConfig(env=env, output_dir=str(out), progress=False, **kw)


def test_layout_matches_lerobot(reach_dataset: Path):
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", EPISODES, DATA):
        assert (reach_dataset / rel).is_file(), rel
    info = json.loads((reach_dataset / "meta/info.json").read_text())
    ref = json.loads((FIXTURE / "meta/info.json").read_text())
    assert list(info) == list(ref)  # same keys, same order as LeRobot 0.6.1
    assert info["codebase_version"] == "v3.0" and info["fps"] == 80 and info["robot_type"] == "sawyer"
    assert info["data_path"] == ref["data_path"] and info["video_path"] is None
    assert info["total_episodes"] == 2 and info["total_tasks"] == 1
    for key in ("observation.state", "action", "next.reward", "next.success", "timestamp", "frame_index",
                "episode_index", "index", "task_index"):
        assert info["features"][key] == ref["features"][key], key
    assert info["features"]["next.done"] == {"dtype": "bool", "shape": [1], "names": None}

    ours, theirs = pq.read_schema(reach_dataset / DATA), pq.read_schema(FIXTURE / DATA)
    for name in theirs.names:
        if name in ours.names:
            assert ours.field(name).type == theirs.field(name).type, name
    assert b"huggingface" in ours.metadata

    ep_ours, ep_theirs = pq.read_schema(reach_dataset / EPISODES), pq.read_schema(FIXTURE / EPISODES)
    for name in ep_theirs.names:
        if "images" not in name:
            assert ep_ours.field(name).type == ep_theirs.field(name).type, name
    tasks_ours, tasks_theirs = pq.read_schema(reach_dataset / "meta/tasks.parquet"), pq.read_schema(
        FIXTURE / "meta/tasks.parquet")
    assert tasks_ours.names == tasks_theirs.names
    assert json.loads(tasks_ours.metadata[b"pandas"])["index_columns"] == ["task"]


def test_contents_shapes_and_stats(reach_dataset: Path):
    table = pq.read_table(reach_dataset / DATA)
    state = np.array(table["observation.state"].to_pylist(), dtype=np.float32)
    action = np.array(table["action"].to_pylist(), dtype=np.float32)
    ep = table["episode_index"].to_numpy()
    n = table.num_rows
    assert state.shape == (n, 39) and action.shape == (n, 4)
    assert np.all(np.abs(action) <= 1.0)
    assert table["index"].to_pylist() == list(range(n))
    episodes = pq.read_table(reach_dataset / EPISODES).to_pylist()
    assert [e["seed"] for e in episodes] == [0, 1]  # reach expert succeeds on both first seeds
    for e in episodes:
        rows = table.slice(e["dataset_from_index"], e["length"]).to_pydict()
        assert rows["frame_index"] == list(range(e["length"]))
        assert rows["next.done"][-1] and not any(rows["next.done"][:-1])
        assert rows["next.success"][-1]  # episodes end at the first success
        np.testing.assert_allclose(rows["timestamp"], np.arange(e["length"]) / 80.0, rtol=1e-6)
    assert set(ep) == {0, 1}

    stats = json.loads((reach_dataset / "meta/stats.json").read_text())
    for key, arr in (("observation.state", state), ("action", action)):
        np.testing.assert_allclose(stats[key]["mean"], arr.astype(np.float64).mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["std"], arr.astype(np.float64).std(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(np.float32(stats[key]["min"]), arr.min(0))
        np.testing.assert_array_equal(np.float32(stats[key]["max"]), arr.max(0))
        assert stats[key]["count"] == [n]
    # Per-episode stats of episode 1 in meta/episodes agree with numpy too.
    sl = ep == 1
    np.testing.assert_allclose(episodes[1]["stats/action/mean"], action[sl].astype(np.float64).mean(0), atol=1e-9)

    ds = ChunkDataset(reach_dataset, chunk_size=8, context_length=3)
    assert len(ds) == n and ds.episode_seeds == [0, 1] and ds.camera_keys == []
    s = ds[0]
    assert s["observation.state"].dtype == np.float32 and s["observation.state"].shape == (39,)
    assert s["action"].shape == (8, 4) and s["action"].dtype == np.float32
    assert s["past_actions"].shape == (3, 4) and s["past_actions_is_pad"].all()
    assert s["task"] == "reach-v3"
    np.testing.assert_array_equal(ds.stats["action"]["mean"], np.float32(stats["action"]["mean"]))


def test_same_seed_same_data(reach_dataset: Path, tmp_path: Path):
    again = collect_demonstrations(_cfg(tmp_path / "again", n_episodes=2, seed=0))
    a, b = pq.read_table(reach_dataset / DATA), pq.read_table(again / DATA)
    assert a.equals(b)
    assert (reach_dataset / DATA).read_bytes() == (again / DATA).read_bytes()
    other = collect_demonstrations(_cfg(tmp_path / "other", n_episodes=1, seed=5))
    first = pq.read_table(other / DATA)["observation.state"][0].as_py()
    assert first != a["observation.state"][0].as_py()


def test_refuses_existing_dir_unless_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--overwrite=true"):
        collect(_cfg(out, n_episodes=1))
    assert main(["--env.task=reach-v3", "--n_episodes=1", f"--output_dir={out}", "--progress=false"]) == 2  # as eval and sweep
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert main(["--env.task=reach-v3", "--n_episodes=1", f"--output_dir={out}", "--overwrite=true",
                 "--progress=false"]) == 0
    assert not (out / "keep.txt").exists() and (out / "meta/info.json").is_file()
    assert "expert success rate 1/1" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or backup dirs left


def test_interrupted_collection_leaves_nothing(tmp_path: Path, monkeypatch):
    real_step = MetaWorldEnv.step
    calls = {"n": 0}

    def flaky_step(self, action):
        calls["n"] += 1
        if calls["n"] == 60:  # in the middle of the second episode
            raise KeyboardInterrupt
        return real_step(self, action)

    monkeypatch.setattr(MetaWorldEnv, "step", flaky_step)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        collect(_cfg(out, n_episodes=3))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_and_bounded_attempts(tmp_path: Path, capsys):
    assert main(["--env.task=psh-v3", f"--output_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert "unknown MetaWorld task 'psh-v3'" in err and "push-v3" in err
    # A 3-step limit makes every expert episode fail: a clear error after max_attempts.
    env = MetaWorldEnvConfig(task="reach-v3", max_episode_steps=3)
    with pytest.raises(RuntimeError, match=r"only 0 of 2 successful reach-v3 episodes after 4 attempts"):
        collect(_cfg(tmp_path / "y", env=env, n_episodes=2, max_attempts=4))
    assert not (tmp_path / "y").exists()


def test_keep_failed_and_images(tmp_path: Path):
    env = MetaWorldEnvConfig(task="reach-v3", max_episode_steps=4, cameras=["corner2"], image_size=32)
    try:
        s = collect(_cfg(tmp_path / "img", env=env, n_episodes=1, keep_failed=True))
    except Exception as exc:  # noqa: BLE001
        if "EGL" in repr(exc) or "GL" in type(exc).__name__:
            pytest.skip(f"offscreen rendering (MUJOCO_GL=egl) unavailable: {exc!r}")
        raise
    assert (s.episodes, s.frames, s.successes) == (1, 4, 0)
    schema = pq.read_schema(s.output_dir / DATA)
    assert schema.field("observation.images.corner2").type == pq.read_schema(FIXTURE / DATA).field(
        "observation.images.corner2").type
    info = json.loads((s.output_dir / "meta/info.json").read_text())
    assert info["features"]["observation.images.corner2"] == {
        "dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
    ds = ChunkDataset(s.output_dir, chunk_size=2)
    frames = ds.get_batch(range(len(ds)))["observation.images.corner2"]
    assert frames.dtype == np.uint8 and frames.shape == (4, 32, 32, 3)
    mean = frames.reshape(-1, 3).mean(0) / 255.0
    np.testing.assert_allclose(ds.stats["observation.images.corner2"]["mean"].reshape(3), mean, rtol=1e-5)
    assert ds.stats["observation.images.corner2"]["std"].shape == (3, 1, 1)
    # The recorded first frame is the image the env renders after reset with that seed.
    with env.make() as e:
        np.testing.assert_array_equal(e.reset(seed=0)["observation.images.corner2"], frames[0])


def test_collect_video_flag(tmp_path: Path, capsys):
    """--dataset.video=true stores the camera as AV1 video; it reads back close to the PNG copy."""
    env = MetaWorldEnvConfig(task="reach-v3", max_episode_steps=12, cameras=["corner2"], image_size=32)
    try:
        png = collect(_cfg(tmp_path / "png", env=env, n_episodes=1, keep_failed=True))
    except Exception as exc:  # noqa: BLE001
        if "EGL" in repr(exc) or "GL" in type(exc).__name__:
            pytest.skip(f"offscreen rendering (MUJOCO_GL=egl) unavailable: {exc!r}")
        raise
    flags = ["--env.task=reach-v3", "--env.max_episode_steps=12", "--env.cameras=[corner2]", "--env.image_size=32",
             "--n_episodes=1", "--keep_failed=true", "--progress=false", f"--output_dir={tmp_path / 'vid'}"]
    assert main(flags + ["--dataset.video=true"]) == 0
    info = json.loads((tmp_path / "vid/meta/info.json").read_text())
    cam = info["features"]["observation.images.corner2"]
    assert cam["dtype"] == "video" and cam["info"]["video.codec"] == "av1" and cam["info"]["video.g"] == 2
    assert (tmp_path / "vid/videos/observation.images.corner2/chunk-000/file-000.mp4").is_file()
    a, b = ChunkDataset(png.output_dir, chunk_size=2), ChunkDataset(tmp_path / "vid", chunk_size=2)
    fa = a.get_batch(range(len(a)))["observation.images.corner2"].astype(int)
    fb = b.get_batch(range(len(b)))["observation.images.corner2"].astype(int)
    assert fa.shape == fb.shape == (12, 32, 32, 3)
    assert np.abs(fa - fb).mean() < 6, np.abs(fa - fb).mean()
    np.testing.assert_array_equal(a.actions, b.actions)
    capsys.readouterr()
    assert main(flags[:-1] + [f"--output_dir={tmp_path / 'x'}", "--dataset.video=true", "--dataset.vcodec=vp9"]) == 2
    assert "unsupported video codec 'vp9'" in capsys.readouterr().err
    odd = [f.replace("--env.image_size=32", "--env.image_size=33") for f in flags[:-1]]
    assert main(odd + [f"--output_dir={tmp_path / 'y'}", "--dataset.video=true"]) == 2
    assert "needs cameras with an even height and width" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
