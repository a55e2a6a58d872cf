"""Prefix-aware execution strategies of the flow policy, for ``chunkwise eval`` / ``sweep``.

    rtc_guided    inference-time RTC: guided inpainting of the queued prefix
    rtc_trained   training-time RTC: the prefix is given clean (needs rtc_training=True)
    delta_expert  the delta expert starts from the encoded action context

Each runs async with ``latest_only`` merging (the new chunk already accounts for the queued
actions, so blending it with them again would only blur it) and hands the policy the queue
through ``Prefix``. The loaded policy is shared between episodes, so the strategy is a thin
view that picks the mode per call instead of mutating the policy. The view comes from
``policy.with_prefix_mode(mode)``, which a ``RemotePolicy`` offers too: the same strategy
runs against a server that serves a flow checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from chunkwise.policies.flow.config import PrefixMode
from chunkwise.runtime.strategies import register_prefix_mode_strategy
from chunkwise.types import PolicyMetadata, Prefix


class PrefixModeView:
    """A FlowPolicy seen through one prefix mode (a Policy itself)."""

    def __init__(self, policy: Any, mode: PrefixMode) -> None:
        modes = policy.prefix_modes()
        if mode not in modes:
            raise ValueError(f"prefix mode {mode!r} not available in this flow checkpoint; it offers {sorted(modes)}")
        self.policy, self.mode = policy, mode
        meta = policy.metadata
        self._metadata = replace(meta, prefix_length=modes[mode], extra={**dict(meta.extra), "prefix_mode": mode})

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def predict_chunk(self, obs_batch: Mapping[str, Any], prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        return self.policy.predict_chunk(obs_batch, prefix, prefix_mode=self.mode)

    def with_prefix_mode(self, mode: PrefixMode) -> "PrefixModeView":
        return PrefixModeView(self.policy, mode)

    def reset(self) -> None:
        self.policy.reset()


register_prefix_mode_strategy(
    "rtc_guided", "flow policy + inference-time RTC guidance toward the queued prefix (async, latest_only)",
    fix="any flow checkpoint offers it: --policy.path=<flow checkpoint>",
)
register_prefix_mode_strategy(
    "rtc_trained", "flow policy + training-time RTC: queued prefix given clean (async, latest_only)",
    fix="train the flow policy with --policy.rtc_training=true",
)
register_prefix_mode_strategy(
    "delta_expert", "flow policy's delta expert from the queued action context (async, latest_only)",
    fix="train the flow policy with --policy.delta_expert=true",
)
