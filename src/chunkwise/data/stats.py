"""Normalization statistics in LeRobot's stats.json format, computed the way LeRobot does.

Per episode (``meta/episodes`` columns ``stats/<key>/<stat>``), for a feature x with frames
on axis 0 (LeRobot 0.6.1's ``compute_episode_stats`` / ``RunningQuantileStats``):

    mean = Σ x / n        std = sqrt(Σ (x − mean)² / n)   (population std, as LeRobot)
    min, max per dimension; count = n (frames)
    q01 .. q99 from a 5000-bin histogram over [min − 1e-10, max + 1e-10] (edges in the data's
    float precision, float32 for float32/bool/uint8 data), linearly interpolated in the bin
    where the cumulative count reaches q·n; an episode of one frame gets q = mean

Images (dtype "image" or "video") are per channel over the pixels of a sample of frames
(all frames up to 100, then n^0.75, at most 10 000; frames of 300 px or more downsampled
by a stride, as LeRobot), scaled to [0, 1], with shape (3, 1, 1) so they broadcast over
CHW tensors; count = frames sampled.

Dataset level (``meta/stats.json``) aggregates the episodes as LeRobot's
``aggregate_stats`` does: min of mins, max of maxes, count-weighted mean, pooled variance
``Σ n_i (std_i² + (mean_i − mean)²) / Σ n_i``, and every quantile the count-weighted mean
of the per-episode quantiles. That average is not a quantile of the dataset (two episodes
with actions 0..6 and 100..104 give q01 = 41.7 where the exact q01 is 0.1), but it is what
LeRobot writes and what a LeRobot policy normalizing by quantiles reads; ``exact_stats``
gives the exact dataset quantiles (``np.quantile``) when those are wanted.

mean/std are computed in float64 (LeRobot keeps float32 running sums: the two agree to
~1e-6 relative).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from chunkwise.data.format import QUANTILES

Stats = dict[str, np.ndarray]

NUM_QUANTILE_BINS = 5000


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """LeRobot promotes with ``np.result_type(dtype, float32)``: float32 for float32, bool,
    uint8; float64 for int64 and float64."""
    return np.result_type(dtype, np.float32)


def _histogram_quantile(hist: np.ndarray, edges: np.ndarray, target: float) -> float:
    """LeRobot's ``RunningQuantileStats._compute_single_quantile``, value for value."""
    cumsum = np.cumsum(hist)
    idx = int(np.searchsorted(cumsum, target))
    if idx == 0:
        return float(edges[0])
    if idx >= len(cumsum):
        return float(edges[-1])
    before = cumsum[idx - 1]
    in_bin = cumsum[idx] - before
    if in_bin == 0:
        return float(edges[idx])
    fraction = (target - before) / in_bin
    return float(edges[idx] + fraction * (edges[idx + 1] - edges[idx]))


def _quantiles_of_counts(values: np.ndarray, counts: np.ndarray, vmin: Any, vmax: Any, n: int,
                         bins: int) -> dict[str, float]:
    """Histogram quantiles of one dimension given its distinct ``values`` (sorted, in the
    work dtype) and their ``counts``. Binning the distinct values is the same histogram as
    ``np.histogram(x, edges)`` (right-open bins, the last one closed) without sorting x."""
    edges = np.linspace(vmin - 1e-10, vmax + 1e-10, bins + 1)  # work dtype, as LeRobot
    b = np.searchsorted(edges, values, side="right") - 1
    b = np.clip(b, 0, bins - 1)
    hist = np.bincount(b, weights=counts, minlength=bins)
    return {name: _histogram_quantile(hist, edges, q * n) for name, q in QUANTILES.items()}


def vector_stats(x: np.ndarray, bins: int = NUM_QUANTILE_BINS) -> Stats:
    """Per-episode stats of an (n, d) or (n,) array over axis 0, as LeRobot computes them."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected an (n,) or (n, d) array, got shape {a.shape}")
    n = a.shape[0]
    if n == 0:
        raise ValueError("cannot compute statistics of an empty array")
    w = a.astype(_work_dtype(a.dtype), copy=False)
    f = a.astype(np.float64)
    out: Stats = {
        "min": w.min(axis=0).astype(np.float64),
        "max": w.max(axis=0).astype(np.float64),
        "mean": f.mean(axis=0),
        "std": f.std(axis=0),
        "count": np.array([n], dtype=np.int64),
    }
    if n < 2:  # LeRobot's _compute_basic_stats
        for name in QUANTILES:
            out[name] = out["mean"].copy()
        return out
    qs = {name: np.empty(a.shape[1]) for name in QUANTILES}
    vmins, vmaxs = w.min(axis=0), w.max(axis=0)
    for j in range(a.shape[1]):
        values, counts = np.unique(w[:, j], return_counts=True)
        for name, v in _quantiles_of_counts(values, counts, vmins[j], vmaxs[j], n, bins).items():
            qs[name][j] = v
    out.update(qs)
    return out


def sample_indices(n: int) -> np.ndarray:
    """Frames LeRobot samples for image stats: all up to 100, then n^0.75 (at most 10 000)."""
    num = max(min(n, 100), min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, num)).astype(int)


def _downsample(frames: np.ndarray) -> np.ndarray:
    """LeRobot's ``auto_downsample_height_width`` on (k, H, W, C) frames."""
    h, w = frames.shape[1:3]
    if max(w, h) < 300:
        return frames
    factor = int(w / 150) if w > h else int(h / 150)
    return frames[:, ::factor, ::factor]


def image_stats(frames: np.ndarray, bins: int = NUM_QUANTILE_BINS, sample: bool = True) -> Stats:
    """Per-channel stats of one episode's uint8 (n, H, W, 3) frames, in [0, 1], each (3, 1, 1).

    ``sample=False`` uses the frames as given (they are already LeRobot's sample)."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"expected (n, H, W, 3) images, got {f.shape}")
    if f.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {f.dtype}")
    if sample:
        f = f[sample_indices(f.shape[0])]
    k = f.shape[0]
    pix = _downsample(f).reshape(-1, 3)
    total = pix.shape[0]
    levels = np.arange(256, dtype=np.float64)
    out: dict[str, list[float]] = {s: [] for s in ("min", "max", "mean", "std", *QUANTILES)}
    for c in range(3):
        counts = np.bincount(pix[:, c], minlength=256)
        present = np.flatnonzero(counts)
        mean = float(counts @ levels) / total
        var = float(counts @ (levels - mean) ** 2) / total
        out["min"].append(float(present[0]))
        out["max"].append(float(present[-1]))
        out["mean"].append(mean)
        out["std"].append(float(np.sqrt(var)))
        if total < 2:
            qs = {name: mean for name in QUANTILES}
        else:
            vals = present.astype(np.float32)  # uint8 pixels are float32 in LeRobot
            qs = _quantiles_of_counts(vals, counts[present], vals[0], vals[-1], total, bins)
        for name, v in qs.items():
            out[name].append(v)
    res: Stats = {name: (np.asarray(v, dtype=np.float64) / 255.0).reshape(3, 1, 1) for name, v in out.items()}
    for name in ("min", "max"):  # float32 pixels / 255 in float32, as LeRobot (0.50196081 for 128)
        res[name] = (np.asarray(out[name], dtype=np.float32) / np.float32(255.0)).astype(np.float64).reshape(3, 1, 1)
    res["count"] = np.array([k], dtype=np.int64)
    return res


def aggregate_stats(per_episode: Sequence[Stats]) -> Stats:
    """Combine per-episode stats of one feature (see module docstring)."""
    if not per_episode:
        raise ValueError("no statistics to aggregate")
    counts = np.array([float(s["count"][0]) for s in per_episode])
    w = counts / counts.sum()

    def wsum(key: str) -> np.ndarray:
        return sum(wi * np.asarray(s[key], dtype=np.float64) for wi, s in zip(w, per_episode))

    mean = wsum("mean")
    var = sum(wi * (np.asarray(s["std"], np.float64) ** 2 + (np.asarray(s["mean"], np.float64) - mean) ** 2)
              for wi, s in zip(w, per_episode))
    out: Stats = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(counts.sum())], dtype=np.int64),
    }
    for name in QUANTILES:
        if all(name in s for s in per_episode):
            out[name] = wsum(name)
    return out


def episode_stats(values: np.ndarray, ends: np.ndarray, visual: bool = False) -> list[Stats]:
    """Per-episode stats of one feature's frames split at ``ends`` (exclusive)."""
    fn = image_stats if visual else vector_stats
    starts = np.concatenate([[0], ends[:-1]])
    return [fn(values[s:e]) for s, e in zip(starts, ends)]


def exact_stats(x: np.ndarray) -> Stats:
    """Exact stats over all frames of an (n, d) or (n,) array: quantiles from ``np.quantile``
    (not what LeRobot writes to stats.json; see the module docstring)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[0] == 0:
        raise ValueError("cannot compute statistics of an empty array")
    out: Stats = {"min": a.min(axis=0), "max": a.max(axis=0), "mean": a.mean(axis=0), "std": a.std(axis=0),
                  "count": np.array([a.shape[0]], dtype=np.int64)}
    for name, q in QUANTILES.items():
        out[name] = np.quantile(a, q, axis=0)
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
