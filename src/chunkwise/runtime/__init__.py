"""Executors: ``VirtualClockExecutor`` (deterministic, delay in control steps)."""

from chunkwise.scheduling.config import STRATEGIES, ExecutionConfig
from chunkwise.runtime.strategies import StrategySpec, available_strategies, get_strategy, register_strategy
from chunkwise.runtime.virtual_clock import Rollout, StepTrace, VirtualClockExecutor

__all__ = [
    "STRATEGIES",
    "ExecutionConfig",
    "Rollout",
    "StepTrace",
    "StrategySpec",
    "VirtualClockExecutor",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]
