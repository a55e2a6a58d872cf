"""The LeRobot v3.0 dataset layout on disk (what LeRobot 0.6.1 writes and reads).

    <root>/
      meta/info.json                            codebase_version "v3.0", fps, features, totals,
                                                path templates, robot_type, splits
      meta/stats.json                           per feature: min max mean std count q01..q99
      meta/tasks.parquet                        task_index, task  (pandas index = task)
      meta/episodes/chunk-000/file-000.parquet  one row per episode: length, data file,
                                                global [from, to) indices, per-episode stats
      data/chunk-000/file-000.parquet           one row per frame, one row group per episode;
                                                images as struct<bytes: PNG, path: str>
      videos/<key>/chunk-000/file-000.mp4       cameras of dtype "video" (not in the parquet):
                                                the episodes back to back (``video.py``)

Episodes are never split across data files; a new file starts when the current one would
exceed ``data_files_size_in_mb`` (video files: ``video_files_size_in_mb``), a new chunk
directory every ``chunks_size`` files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILES_SIZE_MB = 100
DEFAULT_VIDEO_FILES_SIZE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

# Bookkeeping columns every LeRobot frame carries (shape [1]).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

_ARROW_SCALAR = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(),
                 "int32": pa.int32(), "bool": pa.bool_(), "string": pa.string()}
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def is_visual(feature: Mapping[str, Any]) -> bool:
    return feature.get("dtype") in ("image", "video")


def image_feature(height: int, width: int, video: bool = False) -> dict[str, Any]:
    """An RGB camera: PNG frames in the parquet, or (``video=True``) an MP4 stream."""
    return {"dtype": "video" if video else "image", "shape": [height, width, 3],
            "names": ["height", "width", "channels"]}


def vector_feature(dtype: str, dim: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [dim], "names": None}


def arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    """Arrow column type LeRobot uses: shape [1] -> scalar, [n] -> fixed_size_list."""
    dtype = feature["dtype"]
    if dtype == "image":
        return IMAGE_STRUCT
    if dtype not in _ARROW_SCALAR:
        raise ValueError(f"unsupported feature dtype {dtype!r}")
    shape = list(feature["shape"])
    if shape == [1]:
        return _ARROW_SCALAR[dtype]
    if len(shape) == 1:
        return pa.list_(_ARROW_SCALAR[dtype], shape[0])
    raise ValueError(f"unsupported non-image feature shape {shape}")


def hf_features(features: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``huggingface`` schema metadata (datasets.Features) that LeRobot stores, so
    ``datasets.load_dataset`` decodes images and fixed-length lists the same way."""
    out: dict[str, Any] = {}
    for key, ft in features.items():
        if ft["dtype"] == "image":
            out[key] = {"_type": "Image"}
        elif list(ft["shape"]) == [1]:
            out[key] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            out[key] = {"feature": {"dtype": ft["dtype"], "_type": "Value"},
                        "length": int(ft["shape"][0]), "_type": "List"}
    return out


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    meta = {b"huggingface": json.dumps({"info": {"features": hf_features(features)}}).encode()}
    return pa.schema([pa.field(k, arrow_type(v)) for k, v in features.items()], metadata=meta)


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes it: a ``task_index`` column indexed by ``task``
    (LeRobot reads it with ``pd.read_parquet`` and looks tasks up by index)."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    return pa.table({"task_index": list(range(len(tasks))), "task": list(tasks)}, schema=schema)


def load_info(root: Path) -> dict[str, Any]:
    path = Path(root) / INFO_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot v3 dataset: {INFO_PATH} not found")
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: Path, obj: Any) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=4)
    os.replace(tmp, path)
