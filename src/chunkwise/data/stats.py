"""Normalization statistics in LeRobot's stats.json format.

For a feature x with frames on axis 0:

    mean = Σ x / n        std = sqrt(Σ (x − mean)² / n)   (population std, as LeRobot)
    min, max, q01 .. q99 per dimension; count = n (frames)

Images are per channel over all pixels, scaled to [0, 1], with shape (3, 1, 1) so they
broadcast over CHW tensors (LeRobot's convention). Image quantiles are estimated from a
strided subsample of pixels (exact quantiles over every pixel of every frame would
dominate collection time); mean/std/min/max are exact.

Dataset-level stats of vector features are computed on the concatenated frames (exact).
Image stats are aggregated from per-episode stats: weighted mean, pooled variance
``Σ n_i (std_i² + (mean_i − mean)²) / Σ n_i``, and count-weighted quantiles.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from chunkwise.data.format import QUANTILES

Stats = dict[str, np.ndarray]


def vector_stats(x: np.ndarray) -> Stats:
    """Stats of an (n, d) or (n,) array over axis 0 (bools count as 0/1)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[0] == 0:
        raise ValueError("cannot compute statistics of an empty array")
    out: Stats = {
        "min": a.min(axis=0),
        "max": a.max(axis=0),
        "mean": a.mean(axis=0),
        "std": a.std(axis=0),
        "count": np.array([a.shape[0]], dtype=np.int64),
    }
    for name, q in QUANTILES.items():
        out[name] = np.quantile(a, q, axis=0)
    return out


def image_stats(frames: np.ndarray, max_quantile_values: int = 200_000) -> Stats:
    """Per-channel stats of uint8 (n, H, W, 3) frames in [0, 1]; each array (3, 1, 1)."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"expected (n, H, W, 3) images, got {f.shape}")
    n = f.shape[0]
    flat = f.reshape(-1, 3)
    sums = flat.sum(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->j", flat.astype(np.float64), flat.astype(np.float64))
    count = flat.shape[0]
    mean = sums / count
    var = np.maximum(sq / count - mean**2, 0.0)
    stride = max(1, count // max_quantile_values)
    sample = flat[::stride].astype(np.float64)

    def shape(v: np.ndarray) -> np.ndarray:
        return (np.asarray(v, dtype=np.float64) / 255.0).reshape(3, 1, 1)

    out: Stats = {
        "min": shape(flat.min(axis=0)),
        "max": shape(flat.max(axis=0)),
        "mean": shape(mean),
        "std": (np.sqrt(var) / 255.0).reshape(3, 1, 1),
        "count": np.array([n], dtype=np.int64),
    }
    for name, q in QUANTILES.items():
        out[name] = shape(np.quantile(sample, q, axis=0))
    return out


def aggregate_stats(per_episode: Sequence[Stats]) -> Stats:
    """Combine per-episode stats of one feature (see module docstring)."""
    if not per_episode:
        raise ValueError("no statistics to aggregate")
    counts = np.array([float(s["count"][0]) for s in per_episode])
    w = counts / counts.sum()

    def wsum(key: str) -> np.ndarray:
        return sum(wi * s[key] for wi, s in zip(w, per_episode))

    mean = wsum("mean")
    var = sum(wi * (s["std"] ** 2 + (s["mean"] - mean) ** 2) for wi, s in zip(w, per_episode))
    out: Stats = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(counts.sum())], dtype=np.int64),
    }
    for name in QUANTILES:
        out[name] = wsum(name)
    return out


def stats_to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, Any]]:
    return {k: {name: np.asarray(v).tolist() for name, v in s.items()} for k, s in stats.items()}


def stats_from_json(obj: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """stats.json -> {key: {"mean","std","min","max", ...}: float32 arrays}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, s in obj.items():
        out[key] = {name: np.asarray(v, dtype=np.float32) for name, v in s.items() if name != "count"}
        if "count" in s:
            out[key]["count"] = np.asarray(s["count"], dtype=np.int64)
    return out
