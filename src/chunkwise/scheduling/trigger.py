"""When to send a new observation.

LeRobot's rule (its async inference client): send when the queue has run down to a fraction g of a chunk,

    queue_len / actions_per_chunk <= g          (g = chunk_size_threshold, in [0, 1])

g = 0 waits until the queue is empty (almost sync, but without blocking); g = 1 asks for
a new chunk at every step (as long as nothing is in flight). ``must_go``: when the queue
is empty the observation must be served: it is never filtered or dropped.

``ObservationFilter`` is LeRobot's optional de-duplication (skip an observation whose
state is within ``atol`` of the last one sent). It is OFF by default because with a
coarse tolerance a robot that stands still never asks again and stalls; ``must_go``
observations always pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(actions_per_chunk: int, chunk_size_threshold: float) -> None:
    if actions_per_chunk <= 0:
        raise ValueError(f"actions_per_chunk must be positive, got {actions_per_chunk}")
    if not 0.0 <= chunk_size_threshold <= 1.0:
        raise ValueError(f"chunk_size_threshold must be in [0, 1], got {chunk_size_threshold}")


def should_send_observation(queue_len: int, actions_per_chunk: int, chunk_size_threshold: float) -> bool:
    """True when ``queue_len / actions_per_chunk <= chunk_size_threshold``."""
    _check(actions_per_chunk, chunk_size_threshold)
    if queue_len < 0:
        raise ValueError(f"queue_len must be >= 0, got {queue_len}")
    return queue_len / actions_per_chunk <= chunk_size_threshold


def must_go(queue_len: int) -> bool:
    """The queue is empty: this observation must be served (never filtered)."""
    if queue_len < 0:
        raise ValueError(f"queue_len must be >= 0, got {queue_len}")
    return queue_len == 0


@dataclass
class ObservationFilter:
    """Optional de-duplication of near-identical states (off unless ``enabled``)."""

    enabled: bool = False
    atol: float = 1.0

    def __post_init__(self) -> None:
        if self.atol < 0:
            raise ValueError(f"atol must be >= 0, got {self.atol}")
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._last = None

    def accept(self, state: np.ndarray, is_must_go: bool = False) -> bool:
        """Should this observation be sent? Records it as the last sent when it is."""
        state = np.asarray(state, dtype=np.float32)
        if self.enabled and not is_must_go and self._last is not None:
            if self._last.shape == state.shape and np.allclose(state, self._last, atol=self.atol, rtol=0.0):
                return False
        self._last = state.copy()
        return True
