"""Per-episode metrics from a rollout trace, and aggregates with 95% confidence intervals.

Per episode (a_t = action sent to the env at step t, idle action on stalls):

    seam_discontinuity    mean ||a_t - a_{t-1}||  over steps t that start a newer chunk's plan
    inside_discontinuity  mean ||a_t - a_{t-1}||  over the other steps (same chunk)
                          (both only where a_t and a_{t-1} came from the policy, not stalls)
    jerk                  mean ||a_t - 2 a_{t-1} + a_{t-2}||  over all t >= 2 (stalls included:
                          stopping and restarting is real jerk)
    steps_to_success      control steps until info["success"] first fired (None if never)

Aggregates: success rate with the Wilson score interval; means with a Student-t interval
(mean ± t_{0.975, n-1} · s / sqrt(n)). ``steps_to_success`` is averaged over successful
episodes only; per-episode None/NaN values are skipped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from chunkwise.runtime.virtual_clock import Rollout

Z95 = 1.959963984540054
# two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (standard table)
_T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]


def t_quantile_975(df: int) -> float:
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[df - 1]
    # beyond the table: Cornish-Fisher correction of the normal quantile (error < 1e-3)
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass
class EpisodeMetrics:
    seed: int
    success: bool
    episode_return: float
    steps: int
    steps_to_success: int | None
    stall_steps: int
    inferences: int
    n_seams: int
    seam_discontinuity: float | None
    inside_discontinuity: float | None
    jerk: float | None
    mean_queue_len: float | None
    delays: list[int] = field(default_factory=list)  # control steps each arrived chunk took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def episode_metrics(r: Rollout) -> EpisodeMetrics:
    seam_d = inside_d = jerk = mean_q = None
    n_seams = 0
    if r.trace is not None and r.trace.actions.shape[0] > 0:
        tr = r.trace
        a = tr.actions.astype(np.float64)
        policy_step = ~tr.stall
        if a.shape[0] >= 2:
            diff = np.linalg.norm(a[1:] - a[:-1], axis=1)  # diff[k] = ||a_{k+1} - a_k||
            both = policy_step[1:] & policy_step[:-1]
            seam = tr.seam[1:]
            seam_d = _mean_or_none(diff[both & seam])
            inside_d = _mean_or_none(diff[both & ~seam])
        if a.shape[0] >= 3:
            jerk = float(np.linalg.norm(a[2:] - 2 * a[1:-1] + a[:-2], axis=1).mean())
        n_seams = int(tr.seam.sum())
        mean_q = float(tr.queue_len.mean())
        delays = [int(d) for d in tr.delay[tr.delay >= 0]]
    else:
        delays = []
    return EpisodeMetrics(
        seed=r.seed,
        success=r.success,
        episode_return=r.episode_return,
        steps=r.steps,
        steps_to_success=r.steps_to_success,
        stall_steps=r.stall_steps,
        inferences=r.inferences,
        n_seams=n_seams,
        seam_discontinuity=seam_d,
        inside_discontinuity=inside_d,
        jerk=jerk,
        mean_queue_len=mean_q,
        delays=delays,
    )


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not 1e-17
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def mean_ci(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """{"mean", "ci_low", "ci_high", "n"} with a Student-t 95% interval; skips None/NaN."""
    xs = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(xs.size)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    m = float(xs.mean())
    if n == 1:
        return {"mean": m, "ci_low": None, "ci_high": None, "n": 1}
    half = t_quantile_975(n - 1) * float(xs.std(ddof=1)) / math.sqrt(n)
    return {"mean": m, "ci_low": m - half, "ci_high": m + half, "n": n}


MEAN_FIELDS = (
    "episode_return", "steps", "steps_to_success", "stall_steps", "inferences",
    "seam_discontinuity", "inside_discontinuity", "jerk", "mean_queue_len",
)


def summarize(episodes: Sequence[EpisodeMetrics]) -> dict[str, Any]:
    """Aggregate episodes: success rate (+ Wilson CI) and mean ± t-CI of every metric."""
    n = len(episodes)
    k = sum(1 for e in episodes if e.success)
    lo, hi = wilson_interval(k, n)
    out: dict[str, Any] = {
        "n_episodes": n,
        "success_rate": (k / n) if n else None,
        "success_ci_low": lo if n else None,
        "success_ci_high": hi if n else None,
    }
    for f in MEAN_FIELDS:
        out[f] = mean_ci(getattr(e, f) for e in episodes)
    out["delay_counts"] = delay_counts(episodes)
    return out


def delay_counts(episodes: Sequence[EpisodeMetrics]) -> dict[str, int]:
    """{d: number of chunks that arrived d control steps after their request}, d ascending."""
    c = Counter(d for e in episodes for d in e.delays)
    return {str(d): c[d] for d in sorted(c)}
