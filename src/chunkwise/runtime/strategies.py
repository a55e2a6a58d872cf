"""Named execution strategies: the extension point for sweeps and eval.

A strategy name maps to a transform of a base ``ExecutionConfig`` (and optionally of the
policy), so ``chunkwise sweep --strategies=sync,latest_only,...`` can compare them on the
same seeds. Built in:

    sync               strategy="sync" (execute n_action_steps, then block d steps)
    <aggregate name>   strategy="async" with that aggregate_fn_name, e.g. latest_only,
                       weighted_average, average, conservative, temporal_ensemble

Prefix-aware methods register themselves, e.g. (in the RTC module)::

    register_strategy(StrategySpec(
        "rtc_guided", lambda cfg: replace(cfg, strategy="async", aggregate_fn_name="latest_only",
                                          prefix=True),
        wrap_policy=lambda policy: RTCGuided(policy), description="real-time chunking"))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

from chunkwise.policies.base import Policy
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.scheduling.aggregate import available_aggregates


@dataclass(frozen=True)
class StrategySpec:
    name: str
    apply: Callable[[ExecutionConfig], ExecutionConfig]
    wrap_policy: Callable[[Policy], Policy] | None = None
    description: str = ""


_STRATEGIES: dict[str, StrategySpec] = {}
# Strategies that live with their policy family; imported on first use so that listing
# strategy names does not import torch.
_PLUGIN_MODULES: dict[str, str] = {
    "rtc_guided": "chunkwise.policies.flow.strategies",
    "rtc_trained": "chunkwise.policies.flow.strategies",
    "delta_expert": "chunkwise.policies.flow.strategies",
    "oracle_prefix": "chunkwise.policies.scripted.strategies",
}


def register_strategy(spec: StrategySpec) -> None:
    _STRATEGIES[spec.name] = spec


def available_strategies() -> list[str]:
    """Registered names plus every registered aggregate (each is an async strategy)."""
    return sorted(set(_STRATEGIES) | set(_PLUGIN_MODULES) | set(available_aggregates()))


def get_strategy(name: str) -> StrategySpec:
    if name not in _STRATEGIES and name in _PLUGIN_MODULES:
        importlib.import_module(_PLUGIN_MODULES[name])
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    if name in available_aggregates():
        return StrategySpec(
            name,
            lambda cfg: replace(cfg, strategy="async", aggregate_fn_name=name),
            description=f"async, aggregate_fn_name={name}",
        )
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(available_strategies())}")


register_strategy(
    StrategySpec(
        "sync",
        lambda cfg: replace(cfg, strategy="sync"),
        description="execute n_action_steps of a chunk, then block (idle) while the next is computed",
    )
)
