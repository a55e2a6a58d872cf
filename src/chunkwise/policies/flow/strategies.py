"""Prefix-aware execution strategies of the flow policy, for ``chunkwise eval`` / ``sweep``.

    rtc_guided    inference-time RTC: guided inpainting of the queued prefix
    rtc_trained   training-time RTC: the prefix is given clean (needs rtc_training=True)
    delta_expert  seed 000: the delta expert starts from the encoded action context

Each runs async with ``latest_only`` merging (the new chunk already accounts for the queued
actions, so blending it with them again would only blur it) and hands the policy the queue
through ``Prefix``. The loaded policy is shared between episodes, so the strategy is a thin
view that picks the mode per call instead of mutating the policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from chunkwise.policies.base import Policy
from chunkwise.policies.flow.config import PrefixMode
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import StrategySpec, register_strategy
from chunkwise.types import PolicyMetadata, Prefix


class PrefixModeView:
    """A FlowPolicy seen through one prefix mode (a Policy itself)."""

    def __init__(self, policy: Any, mode: PrefixMode) -> None:
        from chunkwise.policies.flow.policy import FlowPolicy

        if not isinstance(policy, FlowPolicy):
            raise TypeError(f"strategy {mode!r} needs a flow policy (policy.type=flow), got {type(policy).__name__}")
        cfg = policy.config
        if mode == "rtc_trained" and not cfg.rtc_training:
            raise ValueError("strategy 'rtc_trained' needs a checkpoint trained with --policy.rtc_training=true")
        if mode == "delta_expert" and policy.model.delta is None:
            raise ValueError("strategy 'delta_expert' needs a checkpoint trained with --policy.delta_expert=true")
        self.policy, self.mode = policy, mode
        meta = policy.metadata
        self._metadata = replace(
            meta,
            uses_prefix=True,
            action_context_length=cfg.action_context_length if mode == "delta_expert" else 0,
            extra={**dict(meta.extra), "prefix_mode": mode},
        )

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def predict_chunk(self, obs_batch: Mapping[str, Any], prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        return self.policy.predict_chunk(obs_batch, prefix, prefix_mode=self.mode)

    def reset(self) -> None:
        self.policy.reset()


def _async_latest(cfg: ExecutionConfig) -> ExecutionConfig:
    return replace(cfg, strategy="async", aggregate_fn_name="latest_only", prefix=True)


def _register(mode: PrefixMode, description: str) -> None:
    def wrap(policy: Policy) -> Policy:
        return PrefixModeView(policy, mode)

    register_strategy(StrategySpec(mode, _async_latest, wrap_policy=wrap, description=description))


_register("rtc_guided", "flow policy + inference-time RTC guidance toward the queued prefix (async, latest_only)")
_register("rtc_trained", "flow policy + training-time RTC: queued prefix given clean (async, latest_only)")
_register("delta_expert", "flow policy's delta expert from the queued action context (async, latest_only)")
