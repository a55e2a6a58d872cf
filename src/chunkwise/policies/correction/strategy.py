"""``<base>+correction``: any base strategy with the per-step correction head on top.

The composed strategy keeps the base's execution config and policy wrapper and adds a
``step_hook`` attribute to the policy; executors hand it to ``ChunkController``, which
calls it on every popped action (virtual clock and server alike, so both run the same
rule). The head comes from ``--correction.path`` (exported to workers as
``CHUNKWISE_CORRECTION_PATH``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from chunkwise.policies.correction.head import CorrectionHead
from chunkwise.policies.correction.source import ENV_PATH
from chunkwise.runtime.strategies import StrategySpec, register_modifier
from chunkwise.scheduling.controller import StepContext
from chunkwise.types import OBS_STATE, Observation

_HEADS: dict[str, CorrectionHead] = {}


def load_head(path: str | None = None) -> CorrectionHead:
    path = path or os.environ.get(ENV_PATH, "")
    if not path:
        raise ValueError("strategy '<base>+correction' needs --correction.path=<correction head dir>")
    path = os.path.abspath(path)
    if path not in _HEADS:
        _HEADS[path] = CorrectionHead.load(path)
    return _HEADS[path]


class CorrectedPolicy:
    """The base policy unchanged (chunks, metadata, modes, transport) plus ``step_hook``."""

    def __init__(self, inner: Any, head: CorrectionHead) -> None:
        self._inner = inner
        self.head = head

    def step_hook(self, obs: Observation, action: np.ndarray, ctx: StepContext) -> np.ndarray:
        return self.head.correct(obs[OBS_STATE], action, ctx.index, ctx.age)

    def __getattr__(self, name: str) -> Any:  # everything else is the base policy's
        return getattr(self._inner, name)


def with_correction(base: StrategySpec) -> StrategySpec:
    def wrap(policy: Any) -> Any:
        if base.wrap_policy is not None:
            policy = base.wrap_policy(policy)
        return CorrectedPolicy(policy, load_head())

    return replace(base, name=f"{base.name}+correction", wrap_policy=wrap,
                   description=f"{base.description or base.name}; per-step correction head (A2C2)")


register_modifier("correction", with_correction)
