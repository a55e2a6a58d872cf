"""``PolicyConfig``: the draccus ChoiceRegistry behind ``--policy.type=<name>``.

Each learned policy family registers its config dataclass::

    @PolicyConfig.register_subclass("act")
    @dataclass
    class ACTConfig(PolicyConfig): ...

and implements ``make_policy(dataset_info)`` returning a trainable policy (an
``nn.Module`` with ``compute_loss(batch)``, ``predict_chunk``, ``metadata``,
``save_pretrained``; see ``chunkwise.policies.common.trainable``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import draccus

if TYPE_CHECKING:
    from chunkwise.policies.common.trainable import DatasetInfo, TrainablePolicy


@dataclass
class PolicyConfig(draccus.ChoiceRegistry, abc.ABC):
    """Fields every trainable chunk policy has. Subclasses add their architecture."""

    chunk_size: int = 20  # H: actions predicted per inference
    # How many of the H actions a synchronous executor runs before re-planning (published in
    # metadata.extra["n_action_steps"]); None: the whole chunk.
    n_action_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay floor as a fraction of lr
    grad_clip_norm: float = 10.0

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.n_action_steps is None:
            self.n_action_steps = self.chunk_size
        if not 0 < self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps must be in [1, chunk_size={self.chunk_size}], got {self.n_action_steps}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be positive, got {self.grad_clip_norm}")

    @property
    def type(self) -> str:
        return self.get_choice_name(self.__class__)

    def to_dict(self) -> dict[str, Any]:
        return dict(draccus.encode(self))

    @classmethod
    def from_dict(cls, policy_type: str, d: dict[str, Any]) -> "PolicyConfig":
        sub = cls.get_choice_class(policy_type)
        return draccus.decode(sub, d)

    @abc.abstractmethod
    def make_policy(self, info: "DatasetInfo") -> "TrainablePolicy":
        """Build a freshly initialised policy for a dataset with these features/stats."""
