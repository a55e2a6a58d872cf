"""Read any LeRobot v3.0 dataset (ours or LeRobot's) into memory as training windows.

A sample at global frame i (episode frames [s, e), t = i − s) holds the observation at t,
the next H actions and the N actions before it::

    episode:        s ........................ i ................. e-1 | (past the end)
    past_actions:         a[i-N] .. a[i-1]                               padded with a[s]
    action:                                    a[i] .. a[i+H-1]          padded with a[e-1]

    action_is_pad[k]      = i + k >= e          (k = 0..H-1)
    past_actions_is_pad[k] = i - N + k < s      (k = 0..N-1)

Everything non-visual is held as numpy arrays; PNG images stay encoded and are decoded
on access (a 128x128 frame decodes in ~0.2 ms). Cameras stored as video (LeRobot's default)
are decoded on access by timestamp through a small cache of open decoders
(``chunkwise.data.video``): frame i of episode e is the video frame at
``from_timestamp[e] + timestamp[i]`` of its file. Window gathering is vectorized:
``get_batch(indices)`` builds a whole batch with a few fancy-indexing operations.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chunkwise.data import format as fmt
from chunkwise.data.stats import aggregate_stats, image_stats, stats_from_json, vector_stats
from chunkwise.types import ACTION, OBS_IMAGE_PREFIX, OBS_STATE, PREFIX_LENGTH

REQUIRED_KEYS = (OBS_STATE, ACTION)
# Per-frame columns returned with each sample only when the dataset has them, with their dtype.
OPTIONAL_COLUMNS: dict[str, type] = {"timestamp": np.float32, "index": np.int64, "task_index": np.int64,
                                     "next.success": np.bool_, "next.done": np.bool_}
NO_IMAGES_HINT = ("train without images (`chunkwise train ... --policy.use_images=false`; in Python "
                  "ChunkDataset(..., image_keys=False))")


def decode_png(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _to_numpy(col: pa.ChunkedArray, feature: dict[str, Any]) -> np.ndarray:
    """fixed_size_list / list / scalar column -> (n, d) or (n,) numpy array."""
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(arr), -1)
    values = arr.to_numpy(zero_copy_only=False)
    if list(feature.get("shape", [1])) != [1]:
        return values.reshape(len(arr), -1)
    return values


class ChunkDataset:
    """``ChunkDataset(root, chunk_size=H, context_length=N)``; ``ds[i]`` is one window."""

    def __init__(self, root: str | Path, chunk_size: int, context_length: int = 0,
                 image_keys: bool = True, video_tolerance_s: float = 1e-4, max_open_videos: int = 8) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if context_length < 0:
            raise ValueError(f"context_length must be >= 0, got {context_length}")
        self.root = Path(root)
        self.chunk_size = int(chunk_size)
        self.context_length = int(context_length)
        self.info = fmt.load_info(self.root)
        version = self.info.get("codebase_version")
        if version != fmt.CODEBASE_VERSION:
            raise ValueError(f"{self.root}: codebase_version {version!r} is not supported (need 'v3.0')")
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        for key in REQUIRED_KEYS:
            if key not in self.features:
                raise ValueError(f"dataset {self.root} is missing required key {key!r} in meta/info.json features")

        table = self._read_data()
        for key in REQUIRED_KEYS + ("episode_index",):
            if key not in table.column_names:
                raise ValueError(f"dataset {self.root} is missing required key {key!r} in its data parquet files")
        n = table.num_rows

        self.state = _to_numpy(table[OBS_STATE], self.features[OBS_STATE]).astype(np.float32)
        self.actions = _to_numpy(table[ACTION], self.features[ACTION]).astype(np.float32)
        if self.state.ndim != 2 or self.actions.ndim != 2:
            raise ValueError(f"{self.root}: observation.state and action must be 1-D per frame")
        self.episode_index = table["episode_index"].to_numpy().astype(np.int64)
        self.frame_index = (table["frame_index"].to_numpy().astype(np.int64) if "frame_index" in table.column_names
                            else None)
        self.task_index = (table["task_index"].to_numpy().astype(np.int64) if "task_index" in table.column_names
                           else np.zeros(n, dtype=np.int64))
        self.reward = (table["next.reward"].to_numpy().astype(np.float32) if "next.reward" in table.column_names
                       else np.zeros(n, dtype=np.float32))
        # Returned per sample only when the dataset has the column.
        self.columns: dict[str, np.ndarray] = {
            key: table[key].to_numpy(zero_copy_only=False).astype(dtype)
            for key, dtype in OPTIONAL_COLUMNS.items() if key in table.column_names}
        # forced (stale-plan) actions ahead of each frame; only datasets with prefix branches
        self.prefix_length = (table[PREFIX_LENGTH].to_numpy().astype(np.int64)
                              if PREFIX_LENGTH in table.column_names else None)

        # Episode bounds from the contiguous runs of episode_index (rows sorted by index).
        change = np.flatnonzero(np.diff(self.episode_index)) + 1
        starts = np.concatenate([[0], change]).astype(np.int64)
        ends = np.concatenate([change, [n]]).astype(np.int64)
        if len(np.unique(self.episode_index[starts])) != len(starts):
            raise ValueError(f"{self.root}: frames of an episode are not contiguous")
        self.episode_bounds: list[tuple[int, int]] = [(int(s), int(e)) for s, e in zip(starts, ends)]
        lengths = ends - starts
        self._ep_start = np.repeat(starts, lengths)
        self._ep_end = np.repeat(ends, lengths)
        if self.frame_index is None:
            self.frame_index = np.arange(n, dtype=np.int64) - self._ep_start

        self.tasks = self._read_tasks()
        self.camera_keys: list[str] = []
        self._images: dict[str, pa.Array] = {}
        # video cameras: per frame, the index of its file in _video_paths[key] and its time there
        self._video_paths: dict[str, list[str]] = {}
        self._video_file: dict[str, np.ndarray] = {}
        self._video_time: dict[str, np.ndarray] = {}
        self._video_forward: dict[str, int] = {}
        self._decoders = None
        visual = [k for k, v in self.features.items() if fmt.is_visual(v)]
        episodes = self._read_episodes()
        if image_keys:
            video_keys = [k for k in visual if self.features[k]["dtype"] == "video"]
            if video_keys:
                self._setup_videos(video_keys, table, episodes, video_tolerance_s, max_open_videos)
            for key in visual:
                if key in video_keys:
                    self.camera_keys.append(key)
                    continue
                if key not in table.column_names:
                    raise ValueError(f"dataset {self.root} is missing image column {key!r} listed in info.json")
                self._images[key] = table[key].combine_chunks().field("bytes")
                self.camera_keys.append(key)
        self.episode_seeds = self._episode_seeds(episodes)
        self.stats = self._load_stats()

    # ------------------------------------------------------------------ loading
    def _read_data(self) -> pa.Table:
        files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not files:
            raise ValueError(f"dataset {self.root} has no data/chunk-*/file-*.parquet files")
        tables = [pq.read_table(f) for f in files]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if "index" in table.column_names:
            order = pc.sort_indices(table["index"])
            table = table.take(order)
        return table

    def _read_tasks(self) -> dict[int, str]:
        path = self.root / fmt.TASKS_PATH
        if not path.is_file():
            return {}
        t = pq.read_table(path)
        return {int(i): str(s) for i, s in zip(t["task_index"].to_pylist(), t["task"].to_pylist())}

    def _read_episodes(self) -> pa.Table | None:
        """meta/episodes (without the per-episode stats columns), sorted by episode_index."""
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            return None
        tables = []
        for f in files:
            names = pq.read_schema(f).names
            tables.append(pq.read_table(f, columns=[c for c in names if not c.startswith("stats/")]))
        t = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        return t.take(pc.sort_indices(t["episode_index"]))

    @staticmethod
    def _episode_seeds(episodes: pa.Table | None) -> list[int | None] | None:
        if episodes is None or "seed" not in episodes.column_names:
            return None
        return episodes["seed"].to_pylist()

    def _setup_videos(self, keys: list[str], table: pa.Table, episodes: pa.Table | None,
                      tolerance_s: float, max_open: int) -> None:
        """Per frame and camera: which video file holds it, and at what time."""
        from chunkwise.data.video import DecoderCache, require_av

        try:
            require_av()
        except ImportError as exc:
            raise ImportError(f"{self.root}: {keys[0]!r} is stored as video. {exc}; or {NO_IMAGES_HINT}") from exc
        template = self.info.get("video_path")
        if not template:
            raise ValueError(f"{self.root}: {keys[0]!r} has dtype 'video' but meta/info.json has no video_path")
        if episodes is None:
            raise ValueError(f"{self.root}: video cameras need meta/episodes/*.parquet (it says where each "
                             "episode's frames are in the video files)")
        ep_rows = {int(e): r for r, e in enumerate(episodes["episode_index"].to_pylist())}
        missing = sorted(set(np.unique(self.episode_index).tolist()) - set(ep_rows))
        if missing:
            raise ValueError(f"{self.root}: episodes {missing[:5]} have frames but no row in meta/episodes")
        row = np.array([ep_rows[int(e)] for e in self.episode_index[np.array([s for s, _ in self.episode_bounds])]])
        row = np.repeat(row, [e - s for s, e in self.episode_bounds])
        if "timestamp" in table.column_names:
            # float32 on disk (~1e-9 s off the frame grid; the decoder's tolerance is 1e-4 s)
            t_frame = table["timestamp"].to_numpy().astype(np.float64)
        else:
            t_frame = self.frame_index / self.fps
        for key in keys:
            cols = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
            absent = [c for c in cols if c not in episodes.column_names]
            if absent:
                raise ValueError(f"{self.root}: meta/episodes lacks {absent} for video camera {key!r}")
            chunk = episodes[cols[0]].to_numpy()
            file = episodes[cols[1]].to_numpy()
            start = episodes[cols[2]].to_numpy().astype(np.float64)
            pairs = sorted(set(zip(chunk.tolist(), file.tolist())))
            paths = [str(self.root / template.format(video_key=key, chunk_index=c, file_index=f)) for c, f in pairs]
            for p in paths:
                if not Path(p).is_file():
                    raise ValueError(f"{self.root}: video file {p} for {key!r} is missing")
            lookup = {pair: i for i, pair in enumerate(pairs)}
            ep_file = np.array([lookup[(c, f)] for c, f in zip(chunk.tolist(), file.tolist())], dtype=np.int64)
            self._video_paths[key] = paths
            self._video_file[key] = ep_file[row]
            self._video_time[key] = start[row] + t_frame
            # decode forward rather than seek over gaps up to a GOP (+2: a seek costs ~2 frames)
            g = (self.features[key].get("info") or {}).get("video.g")
            self._video_forward[key] = (int(g) if isinstance(g, int) and g > 0 else 8) + 2
        self._decoders = DecoderCache(max_open=max_open, tolerance_s=tolerance_s)
        for key in keys:  # fail now, not mid-training, on a file that does not decode or fit
            try:
                got = self._decode_video(key, np.array([0]))
            except Exception as exc:  # noqa: BLE001 - re-raised with the hint
                raise ValueError(f"{self.root}: cannot decode {key!r} ({exc}); fix the file or {NO_IMAGES_HINT}") \
                    from exc
            if got.shape[1:] != tuple(self.features[key]["shape"]):
                raise ValueError(f"{self.root}: {key!r} decodes to {got.shape[1:]} frames, info.json says "
                                 f"{self.features[key]['shape']}")

    def _load_stats(self) -> dict[str, dict[str, np.ndarray]]:
        path = self.root / fmt.STATS_PATH
        stats: dict[str, dict[str, np.ndarray]] = {}
        if path.is_file():
            import json

            with open(path) as f:
                stats = stats_from_json(json.load(f))
        # Compute what is missing (a dataset without stats.json, or partial stats): per
        # episode and aggregated the way LeRobot writes them (chunkwise.data.stats).
        arrays = {OBS_STATE: self.state, ACTION: self.actions, "next.reward": self.reward}
        for key, arr in arrays.items():
            if key in self.features and not {"mean", "std", "min", "max"} <= set(stats.get(key, {})):
                agg = aggregate_stats([vector_stats(arr[s:e]) for s, e in self.episode_bounds])
                stats[key] = {k: np.asarray(v, dtype=np.float32) for k, v in agg.items() if k != "count"}
        for key in self.camera_keys:
            if not {"mean", "std", "min", "max"} <= set(stats.get(key, {})):
                # an estimate from 64 frames spread over the dataset (not every episode's sample)
                sample = np.linspace(0, len(self) - 1, num=min(len(self), 64)).astype(int)
                frames = self._decode_many(key, sample)
                stats[key] = {k: np.asarray(v, dtype=np.float32)
                              for k, v in image_stats(frames, sample=False).items() if k != "count"}
        return stats

    # ------------------------------------------------------------------ properties
    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def state_dim(self) -> int:
        return int(self.state.shape[1])

    @property
    def num_episodes(self) -> int:
        return len(self.episode_bounds)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def video_keys(self) -> list[str]:
        """Cameras read from video files."""
        return list(self._video_paths)

    def _decode(self, key: str, i: int) -> np.ndarray:
        if key in self._video_paths:
            return self._decode_video(key, np.array([i]))[0]
        blob = self._images[key][i].as_py()
        if blob is None:
            raise ValueError(f"{self.root}: frame {i} of {key!r} has no embedded image bytes")
        return decode_png(blob)

    def _decode_video(self, key: str, idx: np.ndarray) -> np.ndarray:
        assert self._decoders is not None
        paths = self._video_paths[key]
        return self._decoders.frames([paths[f] for f in self._video_file[key][idx]], self._video_time[key][idx],
                                     self.features[key]["shape"], self._video_forward[key])

    def _decode_many(self, key: str, idx: np.ndarray) -> np.ndarray:
        if not len(idx):
            return np.zeros((0, *self.features[key]["shape"]), dtype=np.uint8)
        if key in self._video_paths:
            return self._decode_video(key, idx)
        return np.stack([self._decode(key, int(i)) for i in idx])

    def close(self) -> None:
        """Close open video files (reopened on the next access)."""
        if self._decoders is not None:
            self._decoders.close()

    # ------------------------------------------------------------------ windows
    def _windows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        start, end = self._ep_start[idx][:, None], self._ep_end[idx][:, None]
        fut = idx[:, None] + np.arange(self.chunk_size)[None]
        action_is_pad = fut >= end
        out = {
            "action": self.actions[np.minimum(fut, end - 1)],
            "action_is_pad": action_is_pad,
        }
        past = idx[:, None] - self.context_length + np.arange(self.context_length)[None]
        out["past_actions"] = self.actions[np.maximum(past, start)].reshape(len(idx), self.context_length,
                                                                             self.action_dim)
        out["past_actions_is_pad"] = past < start
        return out

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for dataset of {n} frames")
        return np.where(idx < 0, idx + n, idx)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """Stacked windows for ``indices``: arrays with a leading batch dim, ``task`` a list."""
        idx = self._check_indices(indices)
        batch: dict[str, Any] = {OBS_STATE: self.state[idx]}
        for key in self.camera_keys:
            batch[key] = self._decode_many(key, idx)
        batch.update(self._windows(idx))
        batch["task"] = [self.tasks.get(int(t), "") for t in self.task_index[idx]]
        batch["episode_index"] = self.episode_index[idx]
        batch["frame_index"] = self.frame_index[idx]
        batch["next.reward"] = self.reward[idx]
        for key, values in self.columns.items():
            batch[key] = values[idx]
        if self.prefix_length is not None:
            batch[PREFIX_LENGTH] = self.prefix_length[idx]
        return batch

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}; use get_batch for many")
        b = self.get_batch([int(i)])
        out: dict[str, Any] = {k: v[0] for k, v in b.items()}
        out["episode_index"] = int(out["episode_index"])
        out["frame_index"] = int(out["frame_index"])
        out["next.reward"] = np.float32(out["next.reward"])
        for key in ("index", "task_index"):
            if key in out:
                out[key] = int(out[key])
        for key in ("next.success", "next.done"):
            if key in out:
                out[key] = bool(out[key])
        if PREFIX_LENGTH in out:
            out[PREFIX_LENGTH] = int(out[PREFIX_LENGTH])
        return out

    def __repr__(self) -> str:
        return (f"ChunkDataset({str(self.root)!r}, frames={len(self)}, episodes={self.num_episodes}, "
                f"chunk_size={self.chunk_size}, context_length={self.context_length}, "
                f"cameras={self.camera_keys}, video={self.video_keys})")


def image_feature_keys(features: dict[str, dict[str, Any]]) -> list[str]:
    return [k for k in features if k.startswith(OBS_IMAGE_PREFIX)]
