"""Inference-delay models, in control steps.

A delay d means: the observation captured at step t yields a chunk that can first be
executed at step t + d. Models are stateless; randomness comes from the generator the
executor passes in (seeded per episode), so the same seed gives the same delays.

- ``FixedDelay(d)``
- ``SampledDelay(values, probs)``: d drawn from a discrete distribution
- ``ReplayDelay(sequences, fallback)``: episode with seed s gets the delays measured for s
  in order (e.g. on a server), then draws from ``fallback``
- ``delay_steps_from_ms(ms, fps) = ceil(ms * fps / 1000)``; ``FixedDelay.from_ms`` and
  ``SampledDelay.from_ms_samples`` build models from measured latencies (e.g. a server's
  round-trip times): a chunk that takes 30 ms at 80 fps (12.5 ms/step) misses 3 steps.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class DelayModel(Protocol):
    def sample(self, rng: np.random.Generator) -> int: ...

    @property
    def max_delay(self) -> int: ...


def delay_steps_from_ms(ms: float, fps: float) -> int:
    """ceil(ms * fps / 1000): control steps that pass while a request of ``ms`` is served."""
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"latency must be a finite number of milliseconds >= 0, got {ms}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    # round() first so that e.g. 25 ms at 80 fps (exactly 2 steps) is not 3 by float error
    return int(math.ceil(round(ms * fps / 1000.0, 9)))


@dataclass(frozen=True)
class FixedDelay:
    d: int

    def __post_init__(self) -> None:
        if int(self.d) != self.d or self.d < 0:
            raise ValueError(f"inference delay must be an integer >= 0 control steps, got {self.d}")

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.d)

    @property
    def max_delay(self) -> int:
        return int(self.d)

    @classmethod
    def from_ms(cls, ms: float, fps: float) -> "FixedDelay":
        return cls(delay_steps_from_ms(ms, fps))


@dataclass(frozen=True)
class SampledDelay:
    values: Sequence[int]
    probs: Sequence[float] | None = None
    _p: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vals = [int(v) for v in self.values]
        if not vals:
            raise ValueError("SampledDelay needs at least one value")
        if any(v < 0 for v in vals) or any(int(v) != v for v in self.values):
            raise ValueError(f"delays must be integers >= 0, got {list(self.values)}")
        if self.probs is None:
            p = np.full(len(vals), 1.0 / len(vals))
        else:
            p = np.asarray(self.probs, dtype=np.float64)
            if p.shape != (len(vals),) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
                raise ValueError("probs must be non-negative, one per value, and sum to 1")
        object.__setattr__(self, "values", tuple(vals))
        object.__setattr__(self, "_p", p)

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.values[int(rng.choice(len(self.values), p=self._p))])

    @property
    def max_delay(self) -> int:
        return max(self.values)

    @classmethod
    def from_ms_samples(cls, samples_ms: Sequence[float], fps: float) -> "SampledDelay":
        """Empirical distribution of measured latencies, converted to steps."""
        steps = Counter(delay_steps_from_ms(ms, fps) for ms in samples_ms)
        if not steps:
            raise ValueError("need at least one latency sample")
        vals = sorted(steps)
        total = sum(steps.values())
        return cls(vals, [steps[v] / total for v in vals])


@dataclass
class ReplayDelay:
    """Replays measured per-episode delay sequences: the k-th request of the episode with
    seed s gets ``sequences[s][k]``; past the end (or for an unknown seed), ``fallback``.

    Unlike ``SampledDelay`` (independent draws), this keeps what a real server does over
    an episode: long delays come in bursts, and some episodes get more of them."""

    sequences: dict[int, Sequence[int]]
    fallback: DelayModel
    _current: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        for seed, seq in self.sequences.items():
            if any(int(d) != d or d < 0 for d in seq):
                raise ValueError(f"delays of episode {seed} must be integers >= 0, got {list(seq)}")

    def reset(self, seed: int) -> None:
        """Start the episode with this seed (the executor calls it once per episode)."""
        self._current = [int(d) for d in self.sequences.get(int(seed), ())][::-1]

    def sample(self, rng: np.random.Generator) -> int:
        return self._current.pop() if self._current else int(self.fallback.sample(rng))

    @property
    def max_delay(self) -> int:
        return max([self.fallback.max_delay] + [int(d) for seq in self.sequences.values() for d in seq])
