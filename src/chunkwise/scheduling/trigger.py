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

``steady_state_idle`` says how often the queue must run dry at a fixed delay, whatever the
policy does, because only one request is in flight at a time.
"""

from __future__ import annotations

import math
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


def steady_state_idle(actions_per_chunk: int, delay: int, chunk_size_threshold: float) -> tuple[int, int]:
    """(period, idle steps per period) of an async run at a fixed delay d, one request in flight.

    A chunk asked for at step r covers steps r .. r+H-1 and arrives at r+d. The next request
    waits for that arrival and for the queue to fall to g*H, so requests come every

        p = max(d, H - floor(g*H), 1)        and the queue is empty for  min(p, max(0, p + d - H))

    steps of every p. No idle step needs H >= 2d and floor(g*H) >= d. H = 20, g = 1, d = 16:

        t        0 ........ 15  16 .. 19  20 ........ 31  32 .. 35  36 ...
        request  o0             o16                       o32
        runs     (stall)        c0 (4)    idle (12)       c16 (4)   idle ...

    only 4 of every 16 steps move the robot (``tests/runtime/test_virtual_clock.py`` checks
    the formula against the executor); with H = 40 none is lost.
    """
    _check(actions_per_chunk, chunk_size_threshold)
    if delay < 0:
        raise ValueError(f"delay must be >= 0 control steps, got {delay}")
    h = actions_per_chunk
    # floor(g*H) as the trigger itself decides it (g*H in floats: 0.3 * 10 = 2.9999999999999996)
    fires_at = max(q for q in range(h + 1) if should_send_observation(q, h, chunk_size_threshold))
    period = max(delay, h - fires_at, 1)
    return period, min(period, max(0, period + delay - h))


def starvation_note(actions_per_chunk: int, delay: int, chunk_size_threshold: float) -> str | None:
    """A one-line warning when ``steady_state_idle`` is not zero, else None."""
    period, idle = steady_state_idle(actions_per_chunk, delay, chunk_size_threshold)
    if idle == 0:
        return None
    what = (f"at delay {delay} with actions_per_chunk={actions_per_chunk} and chunk_size_threshold="
            f"{chunk_size_threshold:g}, the queue runs dry {idle} of every {period} steps whatever the "
            "policy does (one request in flight)")
    if chunk_size_threshold == 0:  # the request waits for an empty queue: d idle steps per chunk at any H
        return what + "; a chunk_size_threshold above 0 avoids it"
    need = max(2 * delay, math.ceil(delay / chunk_size_threshold - 1e-9))
    while steady_state_idle(need, delay, chunk_size_threshold)[1]:  # floor(g*H) may need one more
        need += 1
    return what + f"; actions_per_chunk >= {need} avoids it"


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
