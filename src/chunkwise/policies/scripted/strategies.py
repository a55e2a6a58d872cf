"""Strategy "oracle_prefix": async (latest_only) with the prefix-aware oracle.

Announced by the ``scripted`` family (``policies/scripted/__init__.py``), imported on first use. It only
makes sense with ``--policy.type=scripted``: it is the upper bound of what a prefix-aware
method (RTC, delta expert) can reach under delay. It cannot run against a server: the
oracle plans by rolling the client's own simulator forward.
"""

from __future__ import annotations

from chunkwise.policies.base import Policy
from chunkwise.policies.scripted.oracle import OraclePolicy
from chunkwise.runtime.strategies import IncompatibleStrategyError, StrategySpec, _async_latest_prefix, register_strategy


def _wrap(policy: Policy) -> Policy:
    if not isinstance(policy, OraclePolicy):
        raise IncompatibleStrategyError(
            "strategy 'oracle_prefix' needs --policy.type=scripted (the simulator oracle), got "
            f"{getattr(getattr(policy, 'metadata', None), 'policy_type', type(policy).__name__)}"
        )
    return policy.with_prefix()


register_strategy(
    StrategySpec(
        "oracle_prefix",
        _async_latest_prefix,
        wrap_policy=_wrap,
        description="scripted oracle that replays the queued prefix before planning (async, latest_only)",
        local_only="the oracle plans by rolling this process's simulator forward; a server has no simulator",
    )
)
