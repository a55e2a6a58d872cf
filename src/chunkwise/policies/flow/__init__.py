"""Flow-matching chunk policy (seed 002), RTC variants and the action-context delta expert (seed 000).

Importing this package registers ``--policy.type=flow``; ``chunkwise.policies.load``
imports ``policy`` on demand for checkpoints whose type is ``flow``.
"""

from chunkwise.policies.flow.config import FlowConfig

__all__ = ["FlowConfig"]
