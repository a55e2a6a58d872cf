"""Named execution strategies: the extension point for sweeps and eval.

A strategy name maps to a transform of a base ``ExecutionConfig`` (and optionally of the
policy), so ``chunkwise sweep --strategies=sync,latest_only,...`` can compare them on the
same seeds. Built in:

    sync               strategy="sync" (execute n_action_steps, then block d steps)
    <aggregate name>   strategy="async" with that aggregate_fn_name, e.g. latest_only,
                       weighted_average, average, conservative, temporal_ensemble

Prefix-aware methods register themselves with their policy family, e.g. (flow)::

    register_prefix_mode_strategy("rtc_guided", "real-time chunking",
                                  fix="any flow checkpoint offers it")

A *modifier* composes with any strategy by name: ``<base>+<modifier>``, e.g.
``delta_expert+correction`` (the base's config and policy wrapper, then the modifier's
own wrapper; see ``register_modifier``).

A prefix-mode strategy runs async with ``latest_only`` and wraps the policy with
``policy.with_prefix_mode(mode)``; it needs ``mode`` in ``policy.metadata.prefix_modes``.
A ``RemotePolicy`` offers the modes of the policy its server serves, so the same
strategy runs on the virtual clock and against a server. ``local_only`` names why a
strategy cannot run against a server (the oracle needs the simulator's state).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

from chunkwise.contracts import Policy
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.scheduling.aggregate import available_aggregates


@dataclass(frozen=True)
class StrategySpec:
    name: str
    apply: Callable[[ExecutionConfig], ExecutionConfig]
    wrap_policy: Callable[[Policy], Policy] | None = None
    description: str = ""
    prefix_mode: str | None = None  # the policy mode it needs (metadata.prefix_modes)
    local_only: str = ""  # why it cannot run against a server ("" = it can)


class IncompatibleStrategyError(ValueError):
    """The policy cannot run this strategy (the message names the policy's modes and the fix)."""


_STRATEGIES: dict[str, StrategySpec] = {}
# Strategies that live with their policy family (name -> module that registers it);
# families announce them (policies/registry.py) so that listing names imports no torch.
_LAZY: dict[str, str] = {}


def register_lazy_strategies(names: tuple[str, ...] | list[str], module: str) -> None:
    for name in names:
        _LAZY[name] = module


def register_strategy(spec: StrategySpec) -> None:
    _STRATEGIES[spec.name] = spec


# Modifiers: name -> compose(base spec) -> spec; lazily imported like _LAZY (no torch at listing)
_MODIFIERS: dict[str, Callable[[StrategySpec], StrategySpec]] = {}
_LAZY_MODIFIERS: dict[str, str] = {"correction": "chunkwise.policies.correction.strategy"}


def register_modifier(name: str, compose: Callable[[StrategySpec], StrategySpec]) -> None:
    """``<base>+name`` resolves to ``compose(get_strategy(base))``."""
    _MODIFIERS[name] = compose


def _async_latest_prefix(cfg: ExecutionConfig) -> ExecutionConfig:
    return replace(cfg, strategy="async", aggregate_fn_name="latest_only", prefix=True)


def with_prefix_mode(policy: Policy, mode: str, fix: str = "") -> Policy:
    """``policy.with_prefix_mode(mode)``, or an error naming the modes it offers and ``fix``."""
    meta = policy.metadata
    offered = dict(meta.prefix_modes)
    if mode not in offered or not hasattr(policy, "with_prefix_mode"):
        names = ", ".join(sorted(offered)) or "none"
        hint = f"; {fix}" if fix else ""
        raise IncompatibleStrategyError(
            f"strategy {mode!r} needs a policy with prefix mode {mode!r}; this {meta.policy_type} policy "
            f"offers: {names}{hint}"
        )
    return policy.with_prefix_mode(mode)  # type: ignore[attr-defined]


def register_prefix_mode_strategy(mode: str, description: str, fix: str = "") -> None:
    """Strategy ``mode``: async, latest_only, the policy switched to prefix mode ``mode``."""

    def wrap(policy: Policy) -> Policy:
        return with_prefix_mode(policy, mode, fix)

    register_strategy(StrategySpec(mode, _async_latest_prefix, wrap_policy=wrap, description=description,
                                   prefix_mode=mode))


def available_strategies() -> list[str]:
    """Registered names plus every registered aggregate (each is an async strategy)."""
    return sorted(set(_STRATEGIES) | set(_LAZY) | set(available_aggregates()))


def get_strategy(name: str) -> StrategySpec:
    if "+" in name and name not in _STRATEGIES:
        base, mod = name.rsplit("+", 1)
        if mod not in _MODIFIERS and mod in _LAZY_MODIFIERS:
            importlib.import_module(_LAZY_MODIFIERS[mod])
        if mod not in _MODIFIERS:
            raise ValueError(f"unknown strategy modifier {mod!r} in {name!r}; valid: "
                             f"{', '.join(sorted(set(_MODIFIERS) | set(_LAZY_MODIFIERS)))}")
        spec = _MODIFIERS[mod](get_strategy(base))
        _STRATEGIES[name] = spec
        return spec
    if name not in _STRATEGIES and name in _LAZY:
        importlib.import_module(_LAZY[name])
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
