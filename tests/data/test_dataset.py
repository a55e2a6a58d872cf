"""ChunkDataset: reads LeRobot's own fixture and a hand-written v3 dataset; windows; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkwise.data.dataset import ChunkDataset


def test_reads_lerobot_fixture(lerobot_tiny: Path):
    ds = ChunkDataset(lerobot_tiny, chunk_size=4, context_length=3)
    assert len(ds) == 12 and ds.fps == 80.0 and ds.action_dim == 4 and ds.state_dim == 39
    assert ds.episode_bounds == [(0, 7), (7, 12)]
    assert ds.camera_keys == ["observation.images.corner2"]
    assert ds.features["observation.images.corner2"]["dtype"] == "image"
    s = ds[8]  # episode 1, frame 1
    np.testing.assert_array_equal(s["action"][0], [101, 101, 101, 101])
    np.testing.assert_array_equal(s["action"][:, 0], [101, 102, 103, 104])
    assert not s["action_is_pad"].any()
    np.testing.assert_array_equal(s["past_actions"][:, 0], [100, 100, 100])  # padded with the first action
    np.testing.assert_array_equal(s["past_actions_is_pad"], [True, True, False])
    assert (s["episode_index"], s["frame_index"], s["task"]) == (1, 1, "reach-v3")
    assert s["next.reward"] == np.float32(1.0)
    img = s["observation.images.corner2"]
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    raw = pq.read_table(lerobot_tiny / "data/chunk-000/file-000.parquet")
    np.testing.assert_array_equal(s["observation.state"], np.float32(raw["observation.state"][8].as_py()))
    # Past the end of episode 0 (frames 0..6): repeat the last action, flagged as padding.
    end = ds[5]
    np.testing.assert_array_equal(end["action"][:, 0], [5, 6, 6, 6])
    np.testing.assert_array_equal(end["action_is_pad"], [False, False, True, True])
    assert ds[0]["task"] == "push-v3"
    assert ds.stats["action"]["mean"].dtype == np.float32
    np.testing.assert_allclose(ds.stats["action"]["max"], [104] * 4)
    assert ds.stats["observation.images.corner2"]["mean"].shape == (3, 1, 1)
    assert ds.episode_seeds is None
    # bookkeeping columns the dataset has come along
    assert s["timestamp"] == np.float32(0.0125) and (s["index"], s["task_index"]) == (8, 1)
    assert s["next.success"] is False and ds[11]["next.success"] is True and "next.done" not in s


def test_get_batch_matches_getitem(lerobot_tiny: Path):
    ds = ChunkDataset(lerobot_tiny, chunk_size=5, context_length=2)
    idx = [0, 6, 7, 11, 3]
    batch = ds.get_batch(idx)
    for j, i in enumerate(idx):
        item = ds[i]
        for key, value in item.items():
            if key == "task":
                assert batch["task"][j] == value
            else:
                np.testing.assert_array_equal(batch[key][j], value, err_msg=key)
    assert batch["action"].shape == (5, 5, 4) and batch["observation.images.corner2"].shape == (5, 32, 32, 3)
    with pytest.raises(IndexError):
        ds.get_batch([12])
    no_img = ChunkDataset(lerobot_tiny, chunk_size=1, image_keys=False)
    assert no_img.camera_keys == [] and "observation.images.corner2" not in no_img[0]


def _write_minimal(root: Path, actions: list[list[float]], episodes: list[int], drop: str | None = None) -> Path:
    """A LeRobot v3 dataset written by hand: variable-length list columns, no stats.json."""
    n = len(actions)
    frame_index = []
    for i, e in enumerate(episodes):
        frame_index.append(0 if i == 0 or episodes[i - 1] != e else frame_index[-1] + 1)
    cols = {
        "observation.state": pa.array([[float(i), -float(i)] for i in range(n)], pa.list_(pa.float32())),
        "action": pa.array(actions, pa.list_(pa.float32())),
        "timestamp": pa.array([f / 10 for f in frame_index], pa.float32()),
        "frame_index": pa.array(frame_index, pa.int64()),
        "episode_index": pa.array(episodes, pa.int64()),
        "index": pa.array(list(range(n)), pa.int64()),
        "task_index": pa.array([0] * n, pa.int64()),
    }
    features = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": None},
        "action": {"dtype": "float32", "shape": [len(actions[0])], "names": None},
        **{k: {"dtype": "int64" if k != "timestamp" else "float32", "shape": [1], "names": None}
           for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")},
    }
    if drop:
        cols.pop(drop)
        features.pop(drop)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta").mkdir()
    pq.write_table(pa.table(cols), root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": ["stack the blocks"]}), root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "fps": 10, "features": features, "total_episodes": len(set(episodes)),
            "total_frames": n, "total_tasks": 1, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
            "robot_type": None}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def test_reads_hand_written_dataset_and_computes_missing_stats(tmp_path: Path):
    actions = [[float(i), 10.0 * i, -1.0] for i in range(7)]
    root = _write_minimal(tmp_path / "mini", actions, [0, 0, 0, 1, 1, 1, 1])
    ds = ChunkDataset(root, chunk_size=3, context_length=2)
    assert len(ds) == 7 and ds.episode_bounds == [(0, 3), (3, 7)] and ds.fps == 10.0
    s = ds[2]  # last frame of episode 0
    np.testing.assert_array_equal(s["action"][:, 0], [2, 2, 2])
    np.testing.assert_array_equal(s["action_is_pad"], [False, True, True])
    np.testing.assert_array_equal(s["past_actions"][:, 0], [0, 1])
    assert not s["past_actions_is_pad"].any()
    s = ds[3]  # first frame of episode 1: context padded with its own first action
    np.testing.assert_array_equal(s["past_actions"][:, 0], [3, 3])
    np.testing.assert_array_equal(s["past_actions_is_pad"], [True, True])
    assert s["task"] == "stack the blocks" and s["next.reward"] == 0.0 and s["frame_index"] == 0
    assert s["index"] == 3 and "next.success" not in s and "next.done" not in s  # only columns it has
    a = np.array(actions, dtype=np.float32)
    np.testing.assert_allclose(ds.stats["action"]["mean"], a.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["std"], a.std(0), rtol=1e-6)
    np.testing.assert_array_equal(ds.stats["action"]["min"], a.min(0))
    np.testing.assert_array_equal(ds.stats["observation.state"]["max"], [6, 0])


@pytest.mark.parametrize("key", ["action", "observation.state"])
def test_missing_required_key_names_key_and_path(tmp_path: Path, key: str):
    root = _write_minimal(tmp_path / "bad", [[0.0]] * 3, [0, 0, 0], drop=key)
    with pytest.raises(ValueError, match=rf"missing required key '{key}'") as err:
        ChunkDataset(root, chunk_size=2)
    assert str(root) in str(err.value)
    with pytest.raises(FileNotFoundError, match="not a LeRobot v3 dataset"):
        ChunkDataset(tmp_path / "nowhere", chunk_size=2)


def test_get_batch_is_fast(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 20_000
    episodes = np.repeat(np.arange(100), n // 100).tolist()
    root = _write_minimal(tmp_path / "big", rng.normal(size=(n, 4)).tolist(), episodes)
    ds = ChunkDataset(root, chunk_size=50, context_length=5)
    import time

    t0 = time.perf_counter()
    for _ in range(20):
        b = ds.get_batch(rng.integers(0, n, size=256))
    per_batch = (time.perf_counter() - t0) / 20
    assert b["action"].shape == (256, 50, 4)
    assert per_batch < 0.05, f"get_batch too slow: {per_batch * 1e3:.1f} ms per 256-sample batch"
