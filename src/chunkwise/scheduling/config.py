"""``ExecutionConfig``: how chunks are executed (sync vs async, aggregate, trigger).

One config for both clocks: ``chunkwise eval`` (virtual clock) and ``chunkwise eval
--server`` / ``SimClient`` / ``RobotClient`` (wall clock) build the same
``ChunkController`` from it (scheduling/controller.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from chunkwise.scheduling.aggregate import check_aggregate_name

Strategy = Literal["sync", "async"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PrefixDelay = Literal["exact", "estimated"]


@dataclass
class ExecutionConfig:
    """Execution strategy for one rollout.

    sync:  execute ``n_action_steps`` actions of a chunk, then request the next one and
           idle (blocked) for the d steps it takes to arrive (ACT/LeRobot default loop).
    async: keep executing queued actions; request a chunk whenever
           ``len(queue) / actions_per_chunk <= chunk_size_threshold`` (at most one request
           in flight); merge it with ``aggregate_fn_name`` when it arrives d steps later.
    """

    strategy: Strategy = "async"
    aggregate_fn_name: str = "weighted_average"
    actions_per_chunk: int = 50
    chunk_size_threshold: float = 0.5
    n_action_steps: int | None = None  # sync only; None = actions_per_chunk
    temporal_ensemble_m: float = 0.01  # m in exp(-m * i) for aggregate "temporal_ensemble"
    prefix: bool = True  # give prefix-aware policies (metadata.prefix_length) the queued actions + d
    # The d told to a prefix-aware policy. exact: the delay the chunk will have (only the
    # virtual clock knows it); estimated: the largest delay of the last 3 chunks that arrived
    # (0 before the first), which is all a client of a real server can know.
    prefix_delay: PrefixDelay = "exact"
    observation_filter: bool = False  # LeRobot-style de-duplication of near-identical states
    observation_filter_atol: float = 1.0
    max_steps: int | None = None  # None = the env's max_episode_steps
    record_trace: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        check_aggregate_name(self.aggregate_fn_name)
        if self.prefix_delay not in get_args(PrefixDelay):
            raise ValueError(f"unknown prefix_delay {self.prefix_delay!r}; valid: {', '.join(get_args(PrefixDelay))}")
        if self.actions_per_chunk <= 0:
            raise ValueError(f"actions_per_chunk must be positive, got {self.actions_per_chunk}")
        if not 0.0 <= self.chunk_size_threshold <= 1.0:
            raise ValueError(f"chunk_size_threshold must be in [0, 1], got {self.chunk_size_threshold}")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= self.actions_per_chunk:
            raise ValueError(
                f"n_action_steps must be in [1, actions_per_chunk={self.actions_per_chunk}], "
                f"got {self.n_action_steps}"
            )
        if self.temporal_ensemble_m < 0:
            raise ValueError(f"temporal_ensemble_m must be >= 0, got {self.temporal_ensemble_m}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")

    @property
    def steps_per_chunk(self) -> int:
        """Actions of each chunk that are kept: n_action_steps (sync) or actions_per_chunk."""
        if self.strategy == "sync" and self.n_action_steps is not None:
            return self.n_action_steps
        return self.actions_per_chunk

    def aggregate_params(self) -> dict[str, float]:
        return {"m": self.temporal_ensemble_m} if self.aggregate_fn_name == "temporal_ensemble" else {}

    def check_chunk_size(self, chunk_size: int) -> None:
        """Raise if the policy's chunks are too short for this config."""
        if self.actions_per_chunk > chunk_size:
            raise ValueError(
                f"actions_per_chunk={self.actions_per_chunk} > the policy's chunk_size={chunk_size}"
            )
