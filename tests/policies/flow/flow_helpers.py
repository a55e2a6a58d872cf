"""Tiny flow policies and synthetic data for the flow tests (fast on CPU)."""

from __future__ import annotations

import numpy as np
import torch

from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.policies.flow.config import FlowConfig
from chunkwise.policies.flow.policy import FlowPolicy
from chunkwise.types import FeatureSpec

S, A = 6, 3


def tiny_info(cameras: tuple[str, ...] = ()) -> DatasetInfo:
    """State-only by default; each name in ``cameras`` adds a 16x16 RGB ``observation.images.<name>``."""
    return DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((S,), "float32"),
                          **{f"observation.images.{c}": FeatureSpec((16, 16, 3), "uint8") for c in cameras}},
        action_dim=A,
        fps=10.0,
        stats={
            "observation.state": {"mean": np.zeros(S, np.float32), "std": np.ones(S, np.float32)},
            "action": {"mean": np.full(A, 0.5, np.float32), "std": np.full(A, 2.0, np.float32)},
        },
        task="toy",
    )


def tiny_config(**kw) -> FlowConfig:
    base = dict(chunk_size=8, n_action_steps=4, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                delta_n_blocks=1, rtc_max_delay=4)
    base.update(kw)
    return FlowConfig(**base)


def tiny_policy(**kw) -> FlowPolicy:
    torch.manual_seed(0)
    return tiny_config(**kw).make_policy(tiny_info())


def toy_batch(n: int, H: int = 8, seed: int = 0) -> dict:
    """Chunks that are straight lines a_i = c + s·i with (c, s) read off the state."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(n, S, generator=g)
    c, s = state[:, :A], 0.2 * state[:, A : 2 * A]
    i = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    action = c.unsqueeze(1) + s.unsqueeze(1) * i
    pad = torch.zeros(n, H, dtype=torch.bool)
    pad[: n // 4, H - 2 :] = True  # some episode ends
    return {"observation.state": state, "action": action, "action_is_pad": pad, "task": ["toy"] * n}
