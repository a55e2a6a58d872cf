"""``ExecutionConfig`` lives with the controller in ``chunkwise.scheduling.config``."""

from chunkwise.scheduling.config import STRATEGIES, ExecutionConfig, PrefixDelay, Strategy

__all__ = ["STRATEGIES", "ExecutionConfig", "PrefixDelay", "Strategy"]
