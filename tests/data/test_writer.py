"""LeRobotV3Writer on hand-made episodes: exact values, file rollover, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunkwise.data import ChunkDataset, LeRobotV3Writer
from chunkwise.data.format import image_feature, vector_feature


def _episode(ep: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "observation.state": rng.normal(size=(n, 3)).astype(np.float32),
        "observation.images.cam": rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8),
        "action": np.full((n, 2), 0.0, np.float32) + (ep * 100 + np.arange(n, dtype=np.float32))[:, None],
        "next.reward": np.arange(n, dtype=np.float32),
    }


def test_writer_rolls_files_and_reader_stitches_them(tmp_path: Path):
    rng = np.random.default_rng(0)
    feats = {"observation.state": vector_feature("float32", 3), "observation.images.cam": image_feature(8, 8),
             "action": vector_feature("float32", 2), "next.reward": {"dtype": "float32", "shape": [1], "names": None}}
    # A tiny size limit forces one data file per episode (LeRobot never splits an episode).
    w = LeRobotV3Writer(tmp_path / "ds", fps=10, features=feats, robot_type="toy", data_files_size_in_mb=1e-6)
    eps = [_episode(e, n, rng) for e, n in enumerate([4, 6, 3])]
    for e, ep in enumerate(eps):
        w.add_episode(ep, task=["a", "b", "a"][e], seed=10 + e)
    info = w.finalize()
    assert info["total_frames"] == 13 and info["total_tasks"] == 2
    files = sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds/data").rglob("*.parquet"))
    assert files == [f"data/chunk-000/file-00{i}.parquet" for i in range(3)]
    meta = pq.read_table(tmp_path / "ds/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [m["data/file_index"] for m in meta] == [0, 1, 2]
    assert [(m["dataset_from_index"], m["dataset_to_index"]) for m in meta] == [(0, 4), (4, 10), (10, 13)]
    first = pq.read_table(tmp_path / "ds/data/chunk-000/file-001.parquet")["observation.images.cam"][0].as_py()
    assert first["path"] == "frame-000000.png" and first["bytes"][:4] == b"\x89PNG"

    ds = ChunkDataset(tmp_path / "ds", chunk_size=3, context_length=1)
    assert ds.episode_bounds == [(0, 4), (4, 10), (10, 13)] and ds.episode_seeds == [10, 11, 12]
    s = ds[9]  # last frame of episode 1
    np.testing.assert_array_equal(s["action"][:, 0], [105, 105, 105])
    np.testing.assert_array_equal(s["action_is_pad"], [False, True, True])
    np.testing.assert_array_equal(s["observation.images.cam"], eps[1]["observation.images.cam"][5])  # lossless
    np.testing.assert_array_equal(s["observation.state"], eps[1]["observation.state"][5])
    assert [ds[i]["task"] for i in (0, 4, 10)] == ["a", "b", "a"]
    stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    all_img = np.concatenate([e["observation.images.cam"] for e in eps]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(np.ravel(stats["observation.images.cam"]["mean"]), all_img.mean(0), rtol=1e-9)
    np.testing.assert_allclose(np.ravel(stats["observation.images.cam"]["std"]), all_img.std(0), rtol=1e-9)


def test_writer_rejects_bad_episodes(tmp_path: Path):
    feats = {"observation.state": vector_feature("float32", 3), "action": vector_feature("float32", 2)}
    w = LeRobotV3Writer(tmp_path / "ds", fps=10, features=feats)
    with pytest.raises(ValueError, match=r"missing \['action'\]"):
        w.add_episode({"observation.state": np.zeros((2, 3), np.float32)}, task="t")
    with pytest.raises(ValueError, match="same non-zero length"):
        w.add_episode({"observation.state": np.zeros((2, 3), np.float32), "action": np.zeros((3, 2))}, task="t")
    with pytest.raises(ValueError, match=r"expected shape \(T, 2\)"):
        w.add_episode({"observation.state": np.zeros((2, 3), np.float32), "action": np.zeros((2, 5))}, task="t")
    with pytest.raises(ValueError, match="no episodes"):
        w.finalize()
    with pytest.raises(ValueError, match="filled in by the writer"):
        LeRobotV3Writer(tmp_path / "x", fps=10, features={**feats, "index": vector_feature("int64", 1)})


def test_bad_episode_leaves_writer_usable(tmp_path: Path):
    feats = {"observation.state": vector_feature("float32", 1), "action": vector_feature("float32", 2)}
    w = LeRobotV3Writer(tmp_path / "ds", fps=10, features=feats)
    with pytest.raises(ValueError):
        w.add_episode({"observation.state": np.ones((2, 1), np.float32), "action": np.zeros((2, 5))}, task="bad")
    w.add_episode({"observation.state": np.zeros((3, 1), np.float32), "action": np.zeros((3, 2))}, task="good")
    info = w.finalize()
    assert info["total_tasks"] == 1 and info["total_frames"] == 3
    stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    assert stats["observation.state"]["max"] == [0.0] and stats["observation.state"]["count"] == [3]
