"""What the BC trainer needs from a policy, and what it knows about the dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from chunkwise.types import OBS_IMAGE_PREFIX, OBS_STATE, FeatureSpec, PolicyMetadata, Prefix


@dataclass
class DatasetInfo:
    """The parts of a dataset a policy is built from (shapes, stats, fps)."""

    observation_spec: dict[str, FeatureSpec]  # keys the policy reads, without batch dim
    action_dim: int
    fps: float
    stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # key -> mean/std/min/max
    task: str = ""

    @property
    def state_dim(self) -> int:
        return int(self.observation_spec[OBS_STATE].shape[0]) if OBS_STATE in self.observation_spec else 0

    @property
    def image_keys(self) -> list[str]:
        return sorted(k for k in self.observation_spec if k.startswith(OBS_IMAGE_PREFIX))


@runtime_checkable
class TrainablePolicy(Protocol):
    """An ``nn.Module`` that is also a chunkwise Policy and can be trained by BC."""

    @property
    def metadata(self) -> PolicyMetadata: ...

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Batch of raw (unnormalized) tensors -> (scalar loss, named float terms for logging)."""
        ...

    def predict_chunk(
        self, obs_batch: Mapping[str, Any], prefix: Sequence[Prefix | None] | None = None
    ) -> np.ndarray: ...

    def reset(self) -> None: ...

    def save_pretrained(self, directory: Path) -> None: ...


def forced_steps(prefix_length: torch.Tensor | None, horizon: int) -> torch.Tensor | None:
    """(B, H) bool: chunk index i < prefix_length[b], the forced (stale-plan) actions of a
    prefix branch (``chunkwise.data.branches``); they are not the expert's choice, so no
    policy may be supervised on them. None when the batch has no ``prefix_length``."""
    if prefix_length is None:
        return None
    return torch.arange(horizon, device=prefix_length.device).unsqueeze(0) < prefix_length.long().reshape(-1, 1)
