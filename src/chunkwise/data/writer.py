"""Write a LeRobot v3.0 dataset (layout in ``format.py``), one episode at a time.

    writer = LeRobotV3Writer(root, fps=80, robot_type="sawyer", features={...})
    writer.add_episode({"observation.state": (T, 39), "action": (T, 4), ...}, task="push-v3", seed=3)
    writer.finalize()          # tasks, episodes, stats.json, info.json (written last)

The caller supplies the user features; ``timestamp``, ``frame_index``, ``episode_index``,
``index`` and ``task_index`` are filled in. Images (dtype "image") are PNG-encoded into
the parquet the way LeRobot embeds them: ``struct<bytes, path="frame-000012.png">``.
Cameras of dtype "video" are encoded into ``videos/<key>/chunk-XXX/file-XXX.mp4``
(``chunkwise.data.video``; AV1 by default, LeRobot's settings) and left out of the parquet;
``meta/episodes`` gets their ``videos/<key>/*`` columns and ``info.json`` their ``info``
block, as LeRobot 0.6.1 writes them. Statistics are computed per episode and aggregated
the way LeRobot does (``chunkwise.data.stats``).
The writer does not make the directory atomic; ``collect`` writes into a temp dir and
renames it at the end.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkwise.data import format as fmt
from chunkwise.data.stats import Stats, aggregate_stats, image_stats, stats_to_json, vector_stats

if TYPE_CHECKING:
    from chunkwise.data.video import VideoEncoder, VideoEncoderOptions


def encode_png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class LeRobotV3Writer:
    def __init__(
        self,
        root: str | Path,
        fps: float,
        features: Mapping[str, Mapping[str, Any]],
        robot_type: str | None = None,
        chunks_size: int = fmt.DEFAULT_CHUNKS_SIZE,
        data_files_size_in_mb: float = fmt.DEFAULT_DATA_FILES_SIZE_MB,
        video_files_size_in_mb: float = fmt.DEFAULT_VIDEO_FILES_SIZE_MB,
        video_options: VideoEncoderOptions | None = None,
    ) -> None:
        self.root = Path(root)
        self.fps = fps
        self.robot_type = robot_type
        self.chunks_size = int(chunks_size)
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        clash = set(features) & set(fmt.DEFAULT_FEATURES)
        if clash:
            raise ValueError(f"features {sorted(clash)} are filled in by the writer; do not pass them")
        self.user_features = {k: dict(v) for k, v in features.items()}
        self.features = {**self.user_features, **{k: dict(v) for k, v in fmt.DEFAULT_FEATURES.items()}}
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        self.schema = fmt.data_schema({k: v for k, v in self.features.items() if v["dtype"] != "video"})
        self.video_options = None
        if self.video_keys:
            from chunkwise.data.video import VideoEncoderOptions

            self.video_options = video_options or VideoEncoderOptions()
            self.video_options.check_available()
            for key in self.video_keys:
                h, w, c = self.features[key]["shape"]
                if c != 3 or h % 2 or w % 2:
                    raise ValueError(f"{key}: video needs RGB frames with an even height and width, got shape "
                                     f"{self.features[key]['shape']}; store it as dtype 'image' instead")
        self._videos: dict[str, VideoEncoder] = {}
        self._video_index: dict[str, tuple[int, int]] = {k: (0, 0) for k in self.video_keys}
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, Stats]] = []
        self._total_frames = 0
        self._chunk, self._file = 0, 0
        self._file_bytes = 0
        self._pq_writer: pq.ParquetWriter | None = None
        self._finalized = False

    # ------------------------------------------------------------------ episodes
    def add_episode(self, frames: Mapping[str, np.ndarray], task: str, seed: int | None = None) -> int:
        """Append one episode; returns its episode_index."""
        if self._finalized:
            raise RuntimeError("writer already finalized")
        missing = set(self.user_features) - set(frames)
        extra = set(frames) - set(self.user_features)
        if missing or extra:
            raise ValueError(f"episode keys mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
        lengths = {k: len(v) for k, v in frames.items()}
        n = next(iter(lengths.values()))
        if n == 0 or any(v != n for v in lengths.values()):
            raise ValueError(f"episode columns must have the same non-zero length, got {lengths}")

        ep = len(self._episodes)
        task_index = self._tasks.get(task, len(self._tasks))
        cols = dict(frames)
        frame_index = np.arange(n, dtype=np.int64)
        cols["timestamp"] = (frame_index / self.fps).astype(np.float32)
        cols["frame_index"] = frame_index
        cols["episode_index"] = np.full(n, ep, dtype=np.int64)
        cols["index"] = self._total_frames + frame_index
        cols["task_index"] = np.full(n, task_index, dtype=np.int64)

        # Validate and convert every column before touching the writer's state, so a bad
        # episode raises without leaving half of itself behind.
        arrays, ep_stats = [], {}
        # LeRobot computes the timestamp stats on frame_index / fps before the float32 cast.
        stat_source = {"timestamp": frame_index / self.fps}
        for key, ft in self.features.items():
            if ft["dtype"] == "video":
                ep_stats[key] = self._check_frames(key, ft, np.asarray(cols[key]))
                continue
            arr, stats = self._column(key, ft, np.asarray(cols[key]), stat_source.get(key))
            arrays.append(arr)
            ep_stats[key] = stats
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._write_table(table)
        video_meta = self._write_videos(cols, n)
        self._tasks.setdefault(task, task_index)

        self._episode_stats.append(ep_stats)
        self._episodes.append({
            "episode_index": ep,
            "tasks": [task],
            "length": n,
            "data/chunk_index": self._chunk,
            "data/file_index": self._file,
            "dataset_from_index": self._total_frames,
            "dataset_to_index": self._total_frames + n,
            **video_meta,
            "seed": seed,
        })
        self._total_frames += n
        return ep

    @staticmethod
    def _check_frames(key: str, ft: Mapping[str, Any], values: np.ndarray) -> Stats:
        shape = list(ft["shape"])
        if values.dtype != np.uint8 or values.ndim != 4 or values.shape[1:] != tuple(shape):
            raise ValueError(f"{key}: expected uint8 images of shape {shape}, got {values.dtype} {values.shape[1:]}")
        return image_stats(values)

    def _write_videos(self, cols: Mapping[str, Any], n: int) -> dict[str, Any]:
        """Append the episode's frames to each camera's current video file."""
        from chunkwise.data.video import VideoEncoder

        meta: dict[str, Any] = {}
        limit = self.video_files_size_in_mb * 1024 * 1024
        for key in self.video_keys:
            enc = self._videos.get(key)
            chunk, file = self._video_index[key]
            if enc is not None and enc.frames > 0 and enc.size_estimate >= limit:
                enc.close()
                file += 1
                if file >= self.chunks_size:
                    chunk, file = chunk + 1, 0
                self._video_index[key] = (chunk, file)
                enc = None
            if enc is None:
                h, w, _ = self.features[key]["shape"]
                path = self.root / fmt.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                enc = self._videos[key] = VideoEncoder(path, self.fps, w, h, self.video_options)
            start = enc.frames
            enc.add(np.asarray(cols[key]))
            meta[f"videos/{key}/chunk_index"] = chunk
            meta[f"videos/{key}/file_index"] = file
            meta[f"videos/{key}/from_timestamp"] = start / self.fps
            meta[f"videos/{key}/to_timestamp"] = (start + n) / self.fps
        return meta

    def _column(self, key: str, ft: Mapping[str, Any], values: np.ndarray,
                stat_source: np.ndarray | None = None) -> tuple[pa.Array, Stats]:
        dtype, shape = ft["dtype"], list(ft["shape"])
        if dtype == "image":
            stats = self._check_frames(key, ft, values)
            blobs = [encode_png(img) for img in values]
            paths = [f"frame-{i:06d}.png" for i in range(len(values))]
            arr = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.array(paths, pa.string())],
                                             fields=list(fmt.IMAGE_STRUCT))
            return arr, stats
        np_dtype = np.dtype("bool" if dtype == "bool" else dtype)
        # Stats of the values as given (LeRobot computes them on the episode buffer).
        raw = values if values.dtype.kind in "biuf" else None
        values = values.astype(np_dtype, copy=False)
        if shape == [1]:
            values = values.reshape(-1)
            arr = pa.array(values, type=fmt.arrow_type(ft))
        else:
            if values.ndim != 2 or values.shape[1] != shape[0]:
                raise ValueError(f"{key}: expected shape (T, {shape[0]}), got {values.shape}")
            arr = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), shape[0])
        src = stat_source if stat_source is not None else (raw.reshape(values.shape) if raw is not None else values)
        return arr, vector_stats(src)

    def _write_table(self, table: pa.Table) -> None:
        limit = self.data_files_size_in_mb * 1024 * 1024
        if self._pq_writer is not None and self._file_bytes + table.nbytes > limit:
            self._pq_writer.close()
            self._pq_writer = None
            self._file += 1
            if self._file >= self.chunks_size:
                self._chunk, self._file = self._chunk + 1, 0
        if self._pq_writer is None:
            path = self.root / fmt.DATA_PATH.format(chunk_index=self._chunk, file_index=self._file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._pq_writer = pq.ParquetWriter(path, self.schema, compression="snappy")
            self._file_bytes = 0
        self._pq_writer.write_table(table)  # one row group per episode, as LeRobot
        self._file_bytes += table.nbytes

    # ------------------------------------------------------------------ metadata
    def finalize(self, extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write tasks, episodes, stats and (last) info.json; returns the info dict.

        ``extra_meta`` (provenance: env config, seeds, ...) goes to ``meta/chunkwise.json``,
        not info.json, so LeRobot's own strict readers see exactly the keys they expect.
        """
        if self._finalized:
            raise RuntimeError("writer already finalized")
        if not self._episodes:
            raise ValueError("no episodes to write")
        if self._pq_writer is not None:
            self._pq_writer.close()
            self._pq_writer = None
        for enc in self._videos.values():
            enc.close()
        features = self._info_features()
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)

        tasks = sorted(self._tasks, key=self._tasks.__getitem__)
        pq.write_table(fmt.tasks_table(tasks), self.root / fmt.TASKS_PATH)

        stats = self._dataset_stats()
        pq.write_table(self._episodes_table(), self._episodes_path())
        fmt.write_json_atomic(self.root / fmt.STATS_PATH, stats_to_json(stats))
        if extra_meta is not None:
            fmt.write_json_atomic(meta / "chunkwise.json", dict(extra_meta))

        info = {
            "codebase_version": fmt.CODEBASE_VERSION,
            "fps": int(self.fps) if float(self.fps).is_integer() else self.fps,
            "features": features,
            "total_episodes": len(self._episodes),
            "total_frames": self._total_frames,
            "total_tasks": len(tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": _number(self.data_files_size_in_mb),
            "video_files_size_in_mb": _number(self.video_files_size_in_mb),
            "data_path": fmt.DATA_PATH,
            "video_path": fmt.VIDEO_PATH if self.video_keys else None,
            "robot_type": self.robot_type,
            "splits": {"train": f"0:{len(self._episodes)}"},
        }
        fmt.write_json_atomic(self.root / fmt.INFO_PATH, info)  # last: marks the dataset complete
        self._finalized = True
        return info

    def abort(self) -> None:
        """Close open files after an error (the directory is left for the caller to remove)."""
        if self._pq_writer is not None:
            self._pq_writer.close()
            self._pq_writer = None
        for enc in self._videos.values():
            enc.abort()

    def _info_features(self) -> dict[str, dict[str, Any]]:
        """Features for info.json; video ones get LeRobot's ``info`` block, probed from the
        first file like LeRobot's ``update_video_info``."""
        out = {k: dict(v) for k, v in self.features.items()}
        for key in self.video_keys:
            from chunkwise.data.video import probe_video_info

            assert self.video_options is not None
            info = probe_video_info(self.root / fmt.VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
            info.update(self.video_options.info_entries())
            info["is_depth_map"] = False
            out[key] = {**{k: v for k, v in out[key].items() if k != "info"}, "info": info}
        return out

    def _episodes_path(self) -> Path:
        path = self.root / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _dataset_stats(self) -> dict[str, Stats]:
        # LeRobot's aggregation: count-weighted means of the per-episode stats (incl. quantiles).
        return {key: aggregate_stats([s[key] for s in self._episode_stats]) for key in self.features}

    def _episodes_table(self) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "episode_index": pa.array([e["episode_index"] for e in self._episodes], pa.int64()),
            "tasks": pa.array([e["tasks"] for e in self._episodes], pa.list_(pa.string())),
            "length": pa.array([e["length"] for e in self._episodes], pa.int64()),
        }
        for name in ("data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"):
            columns[name] = pa.array([e[name] for e in self._episodes], pa.int64())
        for key in self.video_keys:
            for name, typ in (("chunk_index", pa.int64()), ("file_index", pa.int64()),
                              ("from_timestamp", pa.float64()), ("to_timestamp", pa.float64())):
                col = f"videos/{key}/{name}"
                columns[col] = pa.array([e[col] for e in self._episodes], typ)
        for key, ft in self.features.items():
            for stat in fmt.STAT_NAMES:
                values = [s[key][stat].tolist() for s in self._episode_stats]
                if stat == "count":
                    typ = pa.list_(pa.int64())
                elif fmt.is_visual(ft):
                    typ = pa.list_(pa.list_(pa.list_(pa.float64())))
                else:
                    typ = pa.list_(pa.float64())
                columns[f"stats/{key}/{stat}"] = pa.array(values, typ)
        n = len(self._episodes)
        columns["meta/episodes/chunk_index"] = pa.array([0] * n, pa.int64())
        columns["meta/episodes/file_index"] = pa.array([0] * n, pa.int64())
        # chunkwise addition (extra columns are ignored by LeRobot): the env seed per episode.
        columns["seed"] = pa.array([e["seed"] for e in self._episodes], pa.int64())
        return pa.table(columns)


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def read_extra_meta(root: str | Path) -> dict[str, Any] | None:
    path = Path(root) / "meta" / "chunkwise.json"
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)
