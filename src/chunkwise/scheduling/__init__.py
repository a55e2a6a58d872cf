"""Scheduling: the action queue, aggregate functions, triggers, delay models (pure numpy)."""

from chunkwise.scheduling.aggregate import (
    AGGREGATE_FUNCTIONS,
    Aggregator,
    PairwiseAggregator,
    TemporalEnsemble,
    available_aggregates,
    check_aggregate_name,
    get_aggregate,
    register_aggregate,
)
from chunkwise.scheduling.delay import DelayModel, FixedDelay, ReplayDelay, SampledDelay, delay_steps_from_ms
from chunkwise.scheduling.queue import ActionQueue, MergeStats, TimedAction
from chunkwise.scheduling.trigger import (
    ObservationFilter,
    must_go,
    should_send_observation,
    starvation_note,
    steady_state_idle,
)

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "ActionQueue",
    "Aggregator",
    "DelayModel",
    "FixedDelay",
    "MergeStats",
    "ObservationFilter",
    "PairwiseAggregator",
    "ReplayDelay",
    "SampledDelay",
    "TemporalEnsemble",
    "TimedAction",
    "available_aggregates",
    "check_aggregate_name",
    "delay_steps_from_ms",
    "get_aggregate",
    "must_go",
    "register_aggregate",
    "should_send_observation",
    "starvation_note",
    "steady_state_idle",
]
