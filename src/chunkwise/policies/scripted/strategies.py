"""Strategy "oracle_prefix": async (latest_only) with the prefix-aware oracle.

Registered lazily by ``chunkwise.runtime.strategies`` (see ``_PLUGIN_MODULES``). It only
makes sense with ``--policy.type=scripted``: it is the upper bound of what a prefix-aware
method (RTC, delta expert) can reach under delay.
"""

from __future__ import annotations

from dataclasses import replace

from chunkwise.policies.base import Policy
from chunkwise.policies.scripted.oracle import OraclePolicy
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import StrategySpec, register_strategy


def _async_latest_prefix(cfg: ExecutionConfig) -> ExecutionConfig:
    return replace(cfg, strategy="async", aggregate_fn_name="latest_only", prefix=True)


def _wrap(policy: Policy) -> Policy:
    if not isinstance(policy, OraclePolicy):
        raise TypeError(f"strategy 'oracle_prefix' needs --policy.type=scripted, got {type(policy).__name__}")
    return policy.with_prefix()


register_strategy(
    StrategySpec(
        "oracle_prefix",
        _async_latest_prefix,
        wrap_policy=_wrap,
        description="scripted oracle that replays the queued prefix before planning (async, latest_only)",
    )
)
