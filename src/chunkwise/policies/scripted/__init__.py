"""Scripted (non-learned) chunk policies: the simulator oracle."""

from chunkwise.policies.registry import PolicyFamily, register_family
from chunkwise.policies.scripted.oracle import OraclePolicy

register_family(PolicyFamily(
    name="scripted",
    description="the simulator oracle: the scripted expert rolled forward in a snapshot of the env",
    strategies="chunkwise.policies.scripted.strategies",
    strategy_names=("oracle_prefix",),
))

__all__ = ["OraclePolicy"]
