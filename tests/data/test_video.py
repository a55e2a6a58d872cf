"""Video cameras: LeRobot's own AV1 fixture read by timestamp, and chunkwise's writer round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunkwise.data import ChunkDataset, LeRobotV3Writer
from chunkwise.data.format import image_feature, vector_feature
from chunkwise.data.video import DecoderCache, VideoEncoderOptions

av = pytest.importorskip("av")

FIXTURES = Path(__file__).parents[1] / "fixtures"
VIDEO_FIXTURE = FIXTURES / "lerobot-v3-video-tiny"
CAM = "observation.images.corner2"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _written_colour(episode: int, frame: int) -> list[int]:
    """What LeRobot was given for each frame of the fixture (fixtures/README.md)."""
    return [(episode * 100 + frame * 20) % 256, 128, 255 - (frame * 30) % 256]


def test_reads_lerobot_video_fixture():
    ds = ChunkDataset(VIDEO_FIXTURE, chunk_size=4, context_length=3)
    assert len(ds) == 12 and ds.episode_bounds == [(0, 7), (7, 12)]
    assert ds.camera_keys == [CAM] and ds.video_keys == [CAM]
    s = ds[8]  # episode 1, frame 1
    img = s[CAM]
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    np.testing.assert_array_equal(img[0, 0], [118, 126, 224])  # what LeRobot decodes (README)
    np.testing.assert_array_equal(s["action"][:, 0], [101, 102, 103, 104])
    assert (s["episode_index"], s["frame_index"], s["task"]) == (1, 1, "reach-v3")
    assert s["timestamp"] == np.float32(0.0125) and s["index"] == 8 and s["task_index"] == 1
    assert s["next.success"] is False and ds[11]["next.success"] is True
    assert "next.done" not in s  # the fixture has no such column
    # every frame within a few units of the flat colour written, in any access order
    order = np.random.default_rng(0).permutation(12)
    frames = ds.get_batch(order)[CAM]
    for j, i in enumerate(order):
        e, t = (0, i) if i < 7 else (1, i - 7)
        assert frames[j].std(axis=(0, 1)).max() == 0  # flat
        assert np.abs(frames[j][0, 0].astype(int) - _written_colour(e, t)).max() <= 4, (i, frames[j][0, 0])
    # image stats come from LeRobot's stats.json
    np.testing.assert_allclose(ds.stats[CAM]["mean"].ravel(), [0.36601308, 0.50196081, 0.69607845], rtol=1e-6)


def test_video_batch_matches_items_and_reuses_one_decoder():
    ds = ChunkDataset(VIDEO_FIXTURE, chunk_size=5, context_length=2)
    idx = [0, 6, 7, 11, 3, 3]
    batch = ds.get_batch(idx)
    for j, i in enumerate(idx):
        for key, value in ds[i].items():
            if key == "task":
                assert batch["task"][j] == value
            else:
                np.testing.assert_array_equal(batch[key][j], value, err_msg=key)
    for _ in range(20):
        ds.get_batch(np.random.default_rng(1).integers(0, 12, size=8))
    assert ds._decoders.opened == 1 and len(ds._decoders) == 1  # opened once, not per sample
    no_img = ChunkDataset(VIDEO_FIXTURE, chunk_size=1, image_keys=False)
    assert no_img.camera_keys == [] and CAM not in no_img[0]


def test_missing_video_file_names_file_and_cli_flag(tmp_path: Path):
    root = tmp_path / "broken"
    shutil.copytree(VIDEO_FIXTURE, root)
    mp4 = root / "videos" / CAM / "chunk-000/file-000.mp4"
    mp4.unlink()
    with pytest.raises(ValueError, match="file-000.mp4 for 'observation.images.corner2' is missing"):
        ChunkDataset(root, chunk_size=2)
    mp4.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"cannot decode .*--policy\.use_images=false"):
        ChunkDataset(root, chunk_size=2)
    assert len(ChunkDataset(root, chunk_size=2, image_keys=False)) == 12


def test_decoder_rejects_a_time_between_frames():
    from chunkwise.data.video import VideoFrameError

    cache = DecoderCache(max_open=1)
    path = str(VIDEO_FIXTURE / "videos" / CAM / "chunk-000/file-000.mp4")
    assert cache.frames([path], np.array([0.1]), (32, 32, 3))[0][0, 0].tolist() == [118, 126, 224]
    with pytest.raises(VideoFrameError, match="tolerance"):
        cache.frames([path], np.array([0.1 + 0.5 / 80]), (32, 32, 3))
    with pytest.raises(VideoFrameError, match="ends before"):
        cache.frames([path], np.array([12 / 80]), (32, 32, 3))
    cache.close()


def _smooth_episode(ep: int, n: int, size: int = 32) -> np.ndarray:
    """Frames without sharp edges (lossy video blurs those): moving gradients."""
    y, x = np.mgrid[0:size, 0:size]
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = 20 + x * 4 + t + ep * 10
        frames[t, ..., 1] = y * 4 + 40
        frames[t, ..., 2] = 60 + 2 * t
    return frames


def _feats(video: bool) -> dict:
    return {"observation.state": vector_feature("float32", 2), "observation.images.cam": image_feature(32, 32, video),
            "action": vector_feature("float32", 2), "next.done": {"dtype": "bool", "shape": [1], "names": None}}


def _write(root: Path, video: bool, lengths=(45, 50, 40), **kw) -> list[np.ndarray]:
    w = LeRobotV3Writer(root, fps=80, features=_feats(video), robot_type="toy", **kw)
    frames = []
    for e, n in enumerate(lengths):
        f = _smooth_episode(e, n)
        frames.append(f)
        w.add_episode({"observation.state": np.zeros((n, 2), np.float32), "observation.images.cam": f,
                       "action": np.full((n, 2), e, np.float32) + np.arange(n, dtype=np.float32)[:, None],
                       "next.done": np.arange(n) == n - 1}, task="t", seed=e)
    w.finalize()
    return frames


# measured at CRF 30 on these 32x32 frames: AV1 mean 2.1 / max 13, H.264 mean 4.0 / max 29
@pytest.mark.parametrize("vcodec,mean_err,max_err", [("libsvtav1", 3, 20), ("h264", 5, 40)])
def test_video_round_trip(tmp_path: Path, vcodec: str, mean_err: float, max_err: int):
    frames = _write(tmp_path / "ds", video=True, video_options=VideoEncoderOptions(vcodec=vcodec))
    ds = ChunkDataset(tmp_path / "ds", chunk_size=3)
    assert ds.video_keys == ["observation.images.cam"]
    allf = np.concatenate(frames)
    got = ds.get_batch(np.arange(len(ds)))["observation.images.cam"]
    err = np.abs(got.astype(int) - allf.astype(int))
    assert got.dtype == np.uint8 and got.shape == allf.shape
    assert err.mean() < mean_err and err.max() <= max_err, (err.mean(), err.max())
    # random access gives the same frames as the sequential pass
    idx = np.random.default_rng(0).permutation(len(ds))[:40]
    np.testing.assert_array_equal(ds.get_batch(idx)["observation.images.cam"], got[idx])
    s = ds[44]  # last frame of episode 0
    assert s["next.done"] is True and ds[45]["next.done"] is False and s["timestamp"] == np.float32(44 / 80)
    # stats come from the frames before encoding (as LeRobot), not from decoded ones
    stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    np.testing.assert_allclose(np.ravel(stats["observation.images.cam"]["mean"]), allf.reshape(-1, 3).mean(0) / 255,
                               rtol=1e-9)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["features"]["observation.images.cam"]["info"]["video.codec"] == {"libsvtav1": "av1"}.get(vcodec,
                                                                                                        vcodec)


def test_video_layout_matches_lerobot(tmp_path: Path):
    _write(tmp_path / "ds", video=True)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    ref = json.loads((VIDEO_FIXTURE / "meta/info.json").read_text())
    assert list(info) == list(ref) and info["video_path"] == ref["video_path"]
    ours, theirs = info["features"]["observation.images.cam"], ref["features"][CAM]
    assert list(ours) == list(theirs) == ["dtype", "shape", "names", "info"]
    assert list(ours["info"]) == list(theirs["info"])  # same entries, same order
    same = {k: v for k, v in theirs["info"].items() if k not in ("video.height", "video.width")}
    assert {k: ours["info"][k] for k in same} == same  # av1 yuv420p 80 fps, g 2, crf 30, preset 12, ...
    # no image column in the parquet; the episodes table has LeRobot's videos/* columns
    assert "observation.images.cam" not in pq.read_schema(tmp_path / "ds/data/chunk-000/file-000.parquet").names
    ep_ours = pq.read_schema(tmp_path / "ds" / EPISODES)
    ep_theirs = pq.read_schema(VIDEO_FIXTURE / EPISODES)
    vid = [n for n in ep_theirs.names if n.startswith("videos/")]
    assert [n.replace(CAM, "observation.images.cam") for n in vid] == [n for n in ep_ours.names
                                                                       if n.startswith("videos/")]
    head = ep_ours.names[:len(ep_theirs.names[:11])]
    assert head == [n.replace(CAM, "observation.images.cam") for n in ep_theirs.names[:11]]  # same order
    for n in vid:
        assert ep_ours.field(n.replace(CAM, "observation.images.cam")).type == ep_theirs.field(n).type
    rows = pq.read_table(tmp_path / "ds" / EPISODES).to_pylist()
    key = "videos/observation.images.cam"
    assert [(r[f"{key}/from_timestamp"], r[f"{key}/to_timestamp"]) for r in rows] == [
        (0.0, 45 / 80), (45 / 80, 95 / 80), (95 / 80, 135 / 80)]
    # each frame sits where LeRobot looks for it: pts = (from_timestamp + timestamp) on the fps grid
    with av.open(str(tmp_path / "ds/videos/observation.images.cam/chunk-000/file-000.mp4")) as c:
        s = c.streams.video[0]
        pts = [float(f.pts * s.time_base) for f in c.decode(s)]
    np.testing.assert_allclose(pts, np.arange(135) / 80, atol=1e-9)


def test_video_files_roll_over(tmp_path: Path):
    frames = _write(tmp_path / "ds", video=True, video_files_size_in_mb=1e-6)
    files = sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds/videos").rglob("*.mp4"))
    assert files == [f"videos/observation.images.cam/chunk-000/file-00{i}.mp4" for i in range(3)]
    rows = pq.read_table(tmp_path / "ds" / EPISODES).to_pylist()
    assert [r["videos/observation.images.cam/file_index"] for r in rows] == [0, 1, 2]
    assert [r["videos/observation.images.cam/from_timestamp"] for r in rows] == [0.0, 0.0, 0.0]
    ds = ChunkDataset(tmp_path / "ds", chunk_size=2, max_open_videos=2)
    got = ds.get_batch([0, 45, 95, 134])["observation.images.cam"].astype(int)
    want = np.stack([frames[0][0], frames[1][0], frames[2][0], frames[2][-1]]).astype(int)
    assert np.abs(got - want).mean() < 3
    assert len(ds._decoders) == 2  # least recently used file closed
    ds.close()
    np.testing.assert_array_equal(ds.get_batch([0, 45, 95, 134])["observation.images.cam"], got)  # reopened


def test_video_writer_rejects_bad_input(tmp_path: Path):
    with pytest.raises(ValueError, match="even height and width"):
        LeRobotV3Writer(tmp_path / "odd", fps=10, features={"observation.images.c": image_feature(31, 32, True)})
    with pytest.raises(ValueError, match="unsupported video codec 'vp9'"):
        VideoEncoderOptions(vcodec="vp9")
    w = LeRobotV3Writer(tmp_path / "ds", fps=10, features=_feats(True))
    with pytest.raises(ValueError, match="expected uint8 images"):
        w.add_episode({"observation.state": np.zeros((2, 2), np.float32), "action": np.zeros((2, 2), np.float32),
                       "observation.images.cam": np.zeros((2, 16, 16, 3), np.uint8), "next.done": np.zeros(2, bool)},
                      task="t")
