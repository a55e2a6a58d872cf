"""Aggregate functions: how an incoming chunk merges with queued actions of the same timestep.

The four seed formulas (pairwise, ``fn(old, new) -> merged``)::

    weighted_average   0.3 * old + 0.7 * new
    latest_only        new
    average            0.5 * old + 0.5 * new
    conservative       0.7 * old + 0.3 * new

plus ``temporal_ensemble`` (ACT, Zhao et al. 2023). For one timestep covered by the
predictions p_0 (oldest), p_1, ..., p_k the executed action is

    a = sum_i w_i * p_i / sum_i w_i,      w_i = exp(-m * i),   i = 0 for the oldest

so older predictions weigh more (m = 0.01 by default, as in ACT). It needs state per
timestep (the running weighted sum, the weight total and the count), which is why the
queue talks to an ``Aggregator`` object (``init`` / ``update`` / ``value``) rather than to
a bare function. Pairwise functions are wrapped in ``PairwiseAggregator`` whose state is
just the current merged action, so ``update(state, new) == fn(state, new)``.

Users add their own with ``register_aggregate(name, fn)`` (pairwise) or
``register_aggregate(name, SomeAggregatorClass)`` (stateful; constructed with the keyword
parameters given to ``get_aggregate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PairwiseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def weighted_average(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.3 * old + 0.7 * new (seed default)."""
    return 0.3 * old + 0.7 * new


def latest_only(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """new (the old plan is overwritten)."""
    return new


def average(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.5 * old + 0.5 * new."""
    return 0.5 * old + 0.5 * new


def conservative(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.7 * old + 0.3 * new (trust the queued plan more)."""
    return 0.7 * old + 0.3 * new


class Aggregator:
    """Stateful merge of all predictions made for one timestep.

    ``init(new)`` makes the state from the first prediction, ``update(state, new)`` folds
    in a later one, ``value(state)`` is the action to execute. States are opaque to the
    queue and stored per timestep.
    """

    name: str = "aggregator"

    def init(self, new: np.ndarray) -> Any:
        raise NotImplementedError

    def update(self, state: Any, new: np.ndarray) -> Any:
        raise NotImplementedError

    def value(self, state: Any) -> np.ndarray:
        raise NotImplementedError


class PairwiseAggregator(Aggregator):
    """Wraps ``fn(old, new)``: the state is the merged action itself."""

    def __init__(self, fn: PairwiseFn, name: str = "pairwise") -> None:
        self.fn = fn
        self.name = name

    def init(self, new: np.ndarray) -> np.ndarray:
        return np.asarray(new, dtype=np.float32).copy()

    def update(self, state: np.ndarray, new: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(state, np.asarray(new, dtype=np.float32)), dtype=np.float32)

    def value(self, state: np.ndarray) -> np.ndarray:
        return state


@dataclass
class _EnsembleState:
    weighted_sum: np.ndarray  # sum_i w_i * p_i   (float64 for exactness)
    weight_total: float  # sum_i w_i
    count: int  # number of predictions folded in (= the next i)


class TemporalEnsemble(Aggregator):
    """ACT temporal ensembling: w_i = exp(-m * i), i = 0 for the oldest prediction."""

    name = "temporal_ensemble"

    def __init__(self, m: float = 0.01) -> None:
        if not math.isfinite(m) or m < 0:
            raise ValueError(f"temporal_ensemble m must be a finite number >= 0, got {m}")
        self.m = float(m)

    def init(self, new: np.ndarray) -> _EnsembleState:
        return _EnsembleState(np.asarray(new, dtype=np.float64).copy(), 1.0, 1)

    def update(self, state: _EnsembleState, new: np.ndarray) -> _EnsembleState:
        w = math.exp(-self.m * state.count)
        return _EnsembleState(
            state.weighted_sum + w * np.asarray(new, dtype=np.float64),
            state.weight_total + w,
            state.count + 1,
        )

    def value(self, state: _EnsembleState) -> np.ndarray:
        return (state.weighted_sum / state.weight_total).astype(np.float32)


# name -> factory(**params) -> Aggregator
_REGISTRY: dict[str, Callable[..., Aggregator]] = {}


def register_aggregate(name: str, fn: PairwiseFn | type[Aggregator] | Callable[..., Aggregator]) -> None:
    """Register ``fn(old, new) -> merged`` or an ``Aggregator`` subclass under ``name``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"aggregate name must be a non-empty string, got {name!r}")
    if isinstance(fn, type) and issubclass(fn, Aggregator):
        _REGISTRY[name] = fn
    elif callable(fn):
        pairwise = fn

        def factory(**params: Any) -> Aggregator:
            if params:
                raise ValueError(f"aggregate {name!r} takes no parameters, got {sorted(params)}")
            return PairwiseAggregator(pairwise, name=name)

        _REGISTRY[name] = factory
    else:
        raise TypeError(f"register_aggregate({name!r}, ...) needs a callable or an Aggregator subclass")


def available_aggregates() -> list[str]:
    return sorted(_REGISTRY)


def check_aggregate_name(name: str) -> None:
    """Raise ValueError naming the valid choices if ``name`` is not registered."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown aggregate_fn_name {name!r}; valid: {', '.join(available_aggregates())}")


def get_aggregate(name: str, **params: Any) -> Aggregator:
    """A fresh Aggregator for ``name`` (``params`` e.g. ``m=0.01`` for temporal_ensemble)."""
    check_aggregate_name(name)
    return _REGISTRY[name](**params)


# The plain formulas, for code that merges pairs directly (e.g. a server-side merge).
AGGREGATE_FUNCTIONS: dict[str, PairwiseFn] = {
    "weighted_average": weighted_average,
    "latest_only": latest_only,
    "average": average,
    "conservative": conservative,
}
for _name, _fn in AGGREGATE_FUNCTIONS.items():
    register_aggregate(_name, _fn)
register_aggregate("temporal_ensemble", TemporalEnsemble)
