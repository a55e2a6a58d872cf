"""Statistics computed the way LeRobot 0.6.1 does: checked against the stats LeRobot itself
wrote into both fixtures (per-episode columns of meta/episodes and meta/stats.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from chunkwise.data import ChunkDataset, LeRobotV3Writer
from chunkwise.data.stats import aggregate_stats, exact_stats, image_stats, sample_indices, vector_stats

FIXTURES = Path(__file__).parents[1] / "fixtures"
DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _columns(root: Path) -> tuple[dict, dict[str, np.ndarray], list[dict]]:
    """info features, per-frame arrays as LeRobot's episode buffer held them, episode rows."""
    info = json.loads((root / "meta/info.json").read_text())
    table = pq.read_table(root / DATA)
    fps = info["fps"]
    arrays: dict[str, np.ndarray] = {}
    for key, ft in info["features"].items():
        if ft["dtype"] == "video":
            continue
        col = table[key].to_pylist()
        if ft["dtype"] == "image":
            arrays[key] = np.stack([np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB")) for c in col])
        elif key == "timestamp":  # LeRobot's buffer holds frame_index / fps as float64
            arrays[key] = np.asarray(table["frame_index"].to_pylist()) / fps
        else:
            arrays[key] = np.asarray(col, dtype=np.dtype("bool" if ft["dtype"] == "bool" else ft["dtype"]))
    return info, arrays, pq.read_table(root / EPISODES).to_pylist()


# mean/std: LeRobot accumulates float32 moments, std as sqrt(E[x²] − E[x]²) (off by up to
# 7e-5 on the video fixture's pixels, where ours is exact: 60/255); min/max/count and the
# histogram quantiles are reproduced to float rounding.
TOL = {"mean": (1e-6, 1e-7), "std": (1e-5, 1e-4)}  # (rtol, atol)


def _close(ours, theirs, name: str, what: str) -> None:
    theirs = np.asarray(theirs, dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64).reshape(theirs.shape)
    rtol, atol = TOL.get(name, (1e-9, 1e-12))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("fixture", ["lerobot-v3-tiny", "lerobot-v3-video-tiny"])
def test_episode_and_dataset_stats_match_lerobots(fixture: str):
    root = FIXTURES / fixture
    info, arrays, episodes = _columns(root)
    stats_json = json.loads((root / "meta/stats.json").read_text())
    for key, values in arrays.items():
        visual = info["features"][key]["dtype"] == "image"
        per_episode = []
        for ep in episodes:
            part = values[ep["dataset_from_index"]:ep["dataset_to_index"]]
            st = image_stats(part) if visual else vector_stats(part)
            for name, v in st.items():
                _close(v, ep[f"stats/{key}/{name}"], name, f"{fixture} episode {ep['episode_index']} {key} {name}")
            per_episode.append(st)
        for name, v in aggregate_stats(per_episode).items():
            _close(v, stats_json[key][name], name, f"{fixture} stats.json {key} {name}")


def test_video_fixture_image_stats_from_the_frames_lerobot_encoded():
    """LeRobot takes a video camera's stats from the frames before encoding; the fixture's
    flat colours are known (fixtures/README.md), so those stats are reproducible."""
    root = FIXTURES / "lerobot-v3-video-tiny"
    episodes = pq.read_table(root / EPISODES).to_pylist()
    stats_json = json.loads((root / "meta/stats.json").read_text())
    key = "observation.images.corner2"
    per_episode = []
    for ep in episodes:
        e, n = ep["episode_index"], ep["length"]
        frames = np.zeros((n, 32, 32, 3), np.uint8)
        for t in range(n):
            frames[t] = [(e * 100 + t * 20) % 256, 128, 255 - (t * 30) % 256]
        st = image_stats(frames)
        for name, v in st.items():
            _close(v, ep[f"stats/{key}/{name}"], name, f"episode {e} {name}")
        per_episode.append(st)
    for name, v in aggregate_stats(per_episode).items():
        _close(v, stats_json[key][name], name, name)


def test_writer_reproduces_lerobots_stats_json(tmp_path: Path):
    """The fixture's frames written again by chunkwise: the same stats.json LeRobot wrote."""
    root = FIXTURES / "lerobot-v3-tiny"
    info, arrays, episodes = _columns(root)
    tasks = {0: "push-v3", 1: "reach-v3"}
    user = {k: v for k, v in info["features"].items() if k not in BOOKKEEPING}
    w = LeRobotV3Writer(tmp_path / "again", fps=info["fps"], features=user, robot_type="sawyer")
    for ep in episodes:
        sl = slice(ep["dataset_from_index"], ep["dataset_to_index"])
        w.add_episode({k: arrays[k][sl] for k in user}, task=tasks[ep["episode_index"]])
    w.finalize()
    ours = json.loads((tmp_path / "again/meta/stats.json").read_text())
    theirs = json.loads((root / "meta/stats.json").read_text())
    assert set(ours) == set(theirs)
    for key in theirs:
        assert list(ours[key]) == list(theirs[key]), key  # same stats, same order
        for name in theirs[key]:
            _close(ours[key][name], theirs[key][name], name, f"{key} {name}")
    # the per-episode columns too
    eps = pq.read_table(tmp_path / "again" / EPISODES).to_pylist()
    for a, b in zip(eps, episodes):
        for col in b:
            if col.startswith("stats/"):
                _close(a[col], b[col], col.rsplit("/", 1)[1], col)


def test_quantiles_are_count_weighted_means_of_episode_quantiles():
    a, b = np.arange(7.0)[:, None], 100 + np.arange(5.0)[:, None]
    agg = aggregate_stats([vector_stats(a), vector_stats(b)])
    qa, qb = vector_stats(a)["q01"], vector_stats(b)["q01"]
    np.testing.assert_allclose(agg["q01"], (7 * qa + 5 * qb) / 12)
    np.testing.assert_allclose(agg["q01"], [41.6666666666], rtol=1e-9)  # LeRobot's value
    exact = exact_stats(np.concatenate([a, b]))
    np.testing.assert_allclose(exact["q01"], [0.11], rtol=1e-9)  # np.quantile: a different number
    np.testing.assert_allclose(agg["mean"], exact["mean"])
    np.testing.assert_allclose(agg["std"], exact["std"])
    # one-frame episodes: LeRobot sets every quantile to the mean
    one = vector_stats(np.array([[3.0, -1.0]]))
    assert all(np.array_equal(one[q], [3.0, -1.0]) for q in ("q01", "q50", "q99"))


def test_image_sampling_follows_lerobot():
    assert len(sample_indices(7)) == 7 and len(sample_indices(100)) == 100
    assert len(sample_indices(1000)) == 177 and len(sample_indices(20000)) == 1681  # LeRobot's docstring
    big = np.zeros((3, 600, 400, 3), np.uint8)
    big[:, ::4, ::4] = 255  # every 4th pixel: LeRobot's stride-4 downsample of 600 px sees only those
    s = image_stats(big)
    np.testing.assert_allclose(s["mean"].ravel(), [1.0, 1.0, 1.0])
    assert s["count"].tolist() == [3] and s["q50"].shape == (3, 1, 1)


def test_reader_computes_missing_stats_the_lerobot_way(tmp_path: Path):
    import shutil

    root = tmp_path / "nostats"
    shutil.copytree(FIXTURES / "lerobot-v3-tiny", root)
    (root / "meta/stats.json").unlink()
    ds = ChunkDataset(root, chunk_size=2)
    theirs = json.loads((FIXTURES / "lerobot-v3-tiny/meta/stats.json").read_text())
    for key in ("action", "observation.state", "next.reward"):
        for name in ("min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99"):
            np.testing.assert_allclose(ds.stats[key][name], np.float32(theirs[key][name]), rtol=2e-5, atol=1e-6,
                                       err_msg=f"{key} {name}")
