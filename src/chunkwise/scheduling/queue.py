"""The action queue: actions waiting to be executed, each labelled with its control step.

Timeline (H = 6, delay d = 2; the chunk is requested at step t = 10 from obs_10)::

    control step      8   9  10  11  12  13  14  15  16  17
    queued (old)          .  [a  a  a  a]                       labels 10..13 still queued
    request                   ^ obs_10 captured, predict_chunk called
    chunk labels                 10  11  12  13  14  15          action i -> 10 + i
    arrives                           ^ t + d = 12
    executed before arrival      10  11                         from the old plan
    stale (dropped)              10  11                         label < arrival (or <= last executed)
    merged                                12  13                aggregate_fn(old, new)
    appended                                      14  15        new labels, appended

Rules (LeRobot's, made exact):

- ``merge(chunk, first_timestep, arrival_timestep)``: action ``i`` is labelled
  ``first_timestep + i``. Labels ``<=`` the last executed (or already passed) step and
  labels ``< arrival_timestep`` are stale and dropped. Labels already queued merge with
  the aggregator (``aggregate.py``); new labels are appended.
- ``pop()`` executes the smallest queued label. ``pop(now=t)`` is the clocked form used by
  the executors: queued labels ``< t`` have passed and are discarded (counted in
  ``expired``); the action labelled ``t`` is returned, or None if there is none (a stall).
  So with a clock, executed labels always equal the control step they run at: between two
  consecutive executions without a stall they increase by exactly 1, and a stall leaves a
  gap (the robot idled) instead of shifting the later plan in time.
- Gaps inside the queue cannot arise from the executors (a chunk is requested from the
  current step, so its kept labels start at or before ``tail + 1``); if a caller merges a
  chunk that starts further ahead, the hole stays a hole and ``pop(now)`` stalls there.
- ``peek(n)`` returns the next n queued actions without removing anything (the delta expert's action context); ``leftover()`` exports all unexecuted actions (the prefix for RTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkwise.scheduling.aggregate import Aggregator, PairwiseAggregator, get_aggregate


@dataclass(frozen=True, eq=False)
class TimedAction:
    """One action and the control step it belongs to.

    ``chunk`` is the id (0, 1, 2, ... per episode) of the newest chunk that contributed to
    it, so executors can tell where one chunk's plan hands over to the next (a seam).
    """

    timestep: int
    action: np.ndarray
    chunk: int = -1


@dataclass(frozen=True)
class MergeStats:
    received: int  # actions in the incoming chunk
    stale: int  # dropped: label already executed/passed or before the arrival step
    merged: int  # labels already queued, combined with aggregate_fn
    appended: int  # new labels
    chunk_id: int  # id given to this chunk


class _Entry:
    __slots__ = ("state", "value", "chunk")

    def __init__(self, state: Any, value: np.ndarray, chunk: int) -> None:
        self.state = state
        self.value = value
        self.chunk = chunk


class ActionQueue:
    """Timestep-labelled action queue with a pluggable aggregate function (see module doc)."""

    def __init__(
        self, aggregate_fn: str | Aggregator = "latest_only", action_dim: int | None = None, **aggregate_params: Any
    ) -> None:
        """``action_dim`` (optional) is checked on every merge and shapes an empty ``peek``."""
        if action_dim is not None and action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        self.action_dim = action_dim
        if isinstance(aggregate_fn, Aggregator):
            if aggregate_params:
                raise ValueError("aggregate parameters are only accepted with an aggregate name")
            self.aggregator = aggregate_fn
        else:
            self.aggregator = get_aggregate(aggregate_fn, **aggregate_params)
        self._entries: dict[int, _Entry] = {}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (call at the start of every episode)."""
        self._entries.clear()
        self._last_executed = -1
        self._passed = -1  # every label <= this is in the past (executed or stalled over)
        self._next_chunk_id = 0
        self.expired = 0  # actions discarded by pop(now) because their step had passed

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_executed_timestep(self) -> int:
        """Label of the last popped action, -1 before the first."""
        return self._last_executed

    def _sorted_labels(self) -> list[int]:
        return sorted(self._entries)

    # ------------------------------------------------------------------ merge
    def merge(
        self, chunk: np.ndarray, first_timestep: int, arrival_timestep: int | None = None
    ) -> MergeStats:
        """Merge an (H, A) chunk whose action i belongs to step ``first_timestep + i``."""
        # a private copy: queued rows may be views into it, callers may reuse their buffer
        chunk = np.array(chunk, dtype=np.float32, copy=True)
        if chunk.ndim != 2:
            raise ValueError(f"chunk must be (H, A), got shape {chunk.shape}")
        a_dim = self.action_dim
        if a_dim is None and self._entries:
            a_dim = next(iter(self._entries.values())).value.shape[-1]
        if a_dim is not None:
            if chunk.shape[1] != a_dim:
                raise ValueError(f"chunk action dim {chunk.shape[1]} != queued action dim {a_dim}")
        floor = self._passed + 1  # smallest label that is not in the past
        if arrival_timestep is not None:
            floor = max(floor, int(arrival_timestep))
        chunk_id = self._next_chunk_id
        self._next_chunk_id += 1
        first = int(first_timestep)
        start = max(0, floor - first)  # rows before this are stale
        stale = min(start, chunk.shape[0])
        merged = appended = 0
        agg = self.aggregator
        # Pairwise aggregators keep the merged action itself as state: skip the generic
        # init/update/value calls on the hot path (same result, see PairwiseAggregator).
        pairwise = agg.fn if isinstance(agg, PairwiseAggregator) else None
        entries = self._entries
        for i in range(start, chunk.shape[0]):
            label = first + i
            new = chunk[i]
            entry = entries.get(label)
            if entry is None:
                if pairwise is not None:
                    entries[label] = _Entry(None, new, chunk_id)
                else:
                    state = agg.init(new)
                    entries[label] = _Entry(state, agg.value(state), chunk_id)
                appended += 1
            else:
                if pairwise is not None:
                    entry.value = np.asarray(pairwise(entry.value, new), dtype=np.float32)
                else:
                    entry.state = agg.update(entry.state, new)
                    entry.value = agg.value(entry.state)
                entry.chunk = chunk_id
                merged += 1
        return MergeStats(chunk.shape[0], stale, merged, appended, chunk_id)

    # ------------------------------------------------------------------ execute
    def pop(self, now: int | None = None) -> TimedAction | None:
        """Execute the next action (see module doc for the clocked form ``now=t``)."""
        if now is not None:
            now = int(now)
            # Every queued label is > self._passed (merge drops the rest), so only labels in
            # (passed, now) can have expired: O(1) per step in the usual now == passed + 1 case.
            lo = self._passed + 1
            if now - lo <= len(self._entries):
                passed_labels = [lb for lb in range(lo, now) if lb in self._entries]
            else:
                passed_labels = [lb for lb in self._entries if lb < now]
            for label in passed_labels:
                del self._entries[label]
                self.expired += 1
            entry = self._entries.pop(now, None)
            self._passed = max(self._passed, now)
            if entry is None:
                return None
            self._last_executed = now
            return TimedAction(now, entry.value.copy(), entry.chunk)
        if not self._entries:
            return None
        label = min(self._entries)
        entry = self._entries.pop(label)
        self._last_executed = label
        self._passed = max(self._passed, label)
        return TimedAction(label, entry.value.copy(), entry.chunk)

    # ------------------------------------------------------------------ read-only views
    def peek(self, n: int) -> np.ndarray:
        """The next ``k = min(n, len)`` queued actions as a (k, A) copy; never mutates."""
        if n < 0:
            raise ValueError(f"peek(n) needs n >= 0, got {n}")
        labels = self._sorted_labels()[:n]
        if not labels:
            return np.zeros((0, self.action_dim or 0), dtype=np.float32)
        return np.stack([self._entries[lb].value for lb in labels]).astype(np.float32, copy=True)

    def leftover(self) -> list[TimedAction]:
        """All unexecuted actions in label order (copies), e.g. the frozen prefix for RTC."""
        return [
            TimedAction(lb, self._entries[lb].value.copy(), self._entries[lb].chunk)
            for lb in self._sorted_labels()
        ]

    def contiguous_from(self, timestep: int) -> np.ndarray | None:
        """Queued actions labelled ``timestep, timestep+1, ...`` up to the first hole; (k, A) or None."""
        out = []
        lb = int(timestep)
        while lb in self._entries:
            out.append(self._entries[lb].value)
            lb += 1
        return np.stack(out).astype(np.float32, copy=True) if out else None
