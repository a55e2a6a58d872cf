"""The one Policy protocol everything wraps (local model, oracle, remote server).

It is a contract of the lowest layer (``chunkwise.contracts``); re-exported here for the
policy families.
"""

from chunkwise.contracts import Policy, PrefixModes

__all__ = ["Policy", "PrefixModes"]
