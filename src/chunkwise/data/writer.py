"""Write a LeRobot v3.0 dataset (layout in ``format.py``), one episode at a time.

    writer = LeRobotV3Writer(root, fps=80, robot_type="sawyer", features={...})
    writer.add_episode({"observation.state": (T, 39), "action": (T, 4), ...}, task="push-v3", seed=3)
    writer.finalize()          # tasks, episodes, stats.json, info.json (written last)

The caller supplies the user features; ``timestamp``, ``frame_index``, ``episode_index``,
``index`` and ``task_index`` are filled in. Images (dtype "image") are PNG-encoded into
the parquet the way LeRobot embeds them: ``struct<bytes, path="frame-000012.png">``.
The writer does not make the directory atomic; ``collect`` writes into a temp dir and
renames it at the end.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkwise.data import format as fmt
from chunkwise.data.stats import Stats, aggregate_stats, image_stats, stats_to_json, vector_stats


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
        data_files_size_in_mb: int = fmt.DEFAULT_DATA_FILES_SIZE_MB,
    ) -> None:
        self.root = Path(root)
        self.fps = fps
        self.robot_type = robot_type
        self.chunks_size = int(chunks_size)
        self.data_files_size_in_mb = int(data_files_size_in_mb)
        clash = set(features) & set(fmt.DEFAULT_FEATURES)
        if clash:
            raise ValueError(f"features {sorted(clash)} are filled in by the writer; do not pass them")
        self.user_features = {k: dict(v) for k, v in features.items()}
        self.features = {**self.user_features, **{k: dict(v) for k, v in fmt.DEFAULT_FEATURES.items()}}
        self.schema = fmt.data_schema(self.features)
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, Stats]] = []
        self._vectors: dict[str, list[np.ndarray]] = {k: [] for k, v in self.features.items() if not fmt.is_visual(v)}
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
        arrays, ep_stats, vectors = [], {}, {}
        for key, ft in self.features.items():
            arr, stats, values = self._column(key, ft, np.asarray(cols[key]))
            arrays.append(arr)
            ep_stats[key] = stats
            if values is not None:
                vectors[key] = values
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._write_table(table)
        self._tasks.setdefault(task, task_index)
        for key, values in vectors.items():
            self._vectors[key].append(values)

        self._episode_stats.append(ep_stats)
        self._episodes.append({
            "episode_index": ep,
            "tasks": [task],
            "length": n,
            "data/chunk_index": self._chunk,
            "data/file_index": self._file,
            "dataset_from_index": self._total_frames,
            "dataset_to_index": self._total_frames + n,
            "seed": seed,
        })
        self._total_frames += n
        return ep

    def _column(self, key: str, ft: Mapping[str, Any],
                values: np.ndarray) -> tuple[pa.Array, Stats, np.ndarray | None]:
        dtype, shape = ft["dtype"], list(ft["shape"])
        if dtype == "image":
            if values.dtype != np.uint8 or values.shape[1:] != tuple(shape):
                raise ValueError(f"{key}: expected uint8 images of shape {shape}, got {values.dtype} {values.shape[1:]}")
            blobs = [encode_png(img) for img in values]
            paths = [f"frame-{i:06d}.png" for i in range(len(values))]
            arr = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.array(paths, pa.string())],
                                             fields=list(fmt.IMAGE_STRUCT))
            return arr, image_stats(values), None
        np_dtype = np.dtype("bool" if dtype == "bool" else dtype)
        values = values.astype(np_dtype, copy=False)
        if shape == [1]:
            values = values.reshape(-1)
            arr = pa.array(values, type=fmt.arrow_type(ft))
        else:
            if values.ndim != 2 or values.shape[1] != shape[0]:
                raise ValueError(f"{key}: expected shape (T, {shape[0]}), got {values.shape}")
            arr = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), shape[0])
        return arr, vector_stats(values), values

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
            "features": self.features,
            "total_episodes": len(self._episodes),
            "total_frames": self._total_frames,
            "total_tasks": len(tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": fmt.DEFAULT_VIDEO_FILES_SIZE_MB,
            "data_path": fmt.DATA_PATH,
            "video_path": None,
            "robot_type": self.robot_type,
            "splits": {"train": f"0:{len(self._episodes)}"},
        }
        fmt.write_json_atomic(self.root / fmt.INFO_PATH, info)  # last: marks the dataset complete
        self._finalized = True
        return info

    def _episodes_path(self) -> Path:
        path = self.root / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _dataset_stats(self) -> dict[str, Stats]:
        out: dict[str, Stats] = {}
        for key, ft in self.features.items():
            if fmt.is_visual(ft):
                out[key] = aggregate_stats([s[key] for s in self._episode_stats])
            else:  # exact over all frames
                out[key] = vector_stats(np.concatenate(self._vectors[key]))
        return out

    def _episodes_table(self) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "episode_index": pa.array([e["episode_index"] for e in self._episodes], pa.int64()),
            "tasks": pa.array([e["tasks"] for e in self._episodes], pa.list_(pa.string())),
            "length": pa.array([e["length"] for e in self._episodes], pa.int64()),
        }
        for name in ("data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"):
            columns[name] = pa.array([e[name] for e in self._episodes], pa.int64())
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


def read_extra_meta(root: str | Path) -> dict[str, Any] | None:
    path = Path(root) / "meta" / "chunkwise.json"
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)
