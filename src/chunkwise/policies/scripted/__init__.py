"""Scripted (non-learned) chunk policies: the simulator oracle."""

from chunkwise.policies.scripted.oracle import OraclePolicy

__all__ = ["OraclePolicy"]
