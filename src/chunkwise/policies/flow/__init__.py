"""Flow-matching chunk policy, real-time chunking (guided and training-time) and the
action-context delta expert.

Importing this package registers the ``flow`` family; ``chunkwise.policies.load`` imports
``policy`` on demand for checkpoints whose type is ``flow``.
"""

from typing import Any

from chunkwise.policies.registry import PolicyFamily, register_family

register_family(PolicyFamily(
    name="flow",
    description="flow matching over action chunks (pi0-style), RTC, delta expert",
    loader="chunkwise.policies.flow.policy",
    config="chunkwise.policies.flow.config",
    strategies="chunkwise.policies.flow.strategies",
    strategy_names=("rtc_guided", "rtc_trained", "delta_expert"),
))

__all__ = ["FlowConfig"]


def __getattr__(name: str) -> Any:  # FlowConfig imports torch (via rtc.py): only when asked for
    if name == "FlowConfig":
        from chunkwise.policies.flow.config import FlowConfig

        return FlowConfig
    raise AttributeError(name)
