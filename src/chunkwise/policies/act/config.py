"""``ACTConfig`` (``--policy.type=act``): architecture and optimisation settings of ACT.

Defaults are sized for CPU training on MetaWorld state (~0.18M parameters, ~1200
samples/s per core; docs/act.md has the measurements): the reference ACT (chunk 100,
512-d, 4+7 layers, lr 1e-5) is far too slow to train on 2 CPU cores. For camera input
use a wider model (e.g. dim_model=128, dim_feedforward=512, 2 encoder layers, ~1.1M).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chunkwise.policies.common.config import PolicyConfig

if TYPE_CHECKING:
    from chunkwise.policies.act.policy import ACTPolicy
    from chunkwise.policies.common.trainable import DatasetInfo


@PolicyConfig.register_subclass("act")
@dataclass
class ACTConfig(PolicyConfig):
    dim_model: int = 64
    n_heads: int = 4
    n_encoder_layers: int = 1
    n_decoder_layers: int = 1
    n_vae_encoder_layers: int = 1
    dim_feedforward: int = 256
    dropout: float = 0.1
    use_vae: bool = True
    latent_dim: int = 32
    kl_weight: float = 10.0  # loss = L1(actions) + kl_weight * KL(q(z|s,a) || N(0, I))
    use_images: bool = False  # read the dataset's cameras through the conv backbone
    image_backbone_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    # Named slices [start, end) of the action vector, one output head each, e.g.
    # {"xyz": [0, 3], "gripper": [3, 4]}. None: one head over the whole action.
    action_groups: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("dim_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "dim_feedforward", "latent_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ACTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_vae_encoder_layers <= 0 and self.use_vae:
            raise ValueError("ACTConfig.n_vae_encoder_layers must be positive when use_vae is true")
        if self.dim_model % self.n_heads:
            raise ValueError(f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})")
        if self.dim_model % 4:
            raise ValueError(f"dim_model must be divisible by 4 (2-D image position embedding), got {self.dim_model}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if not self.image_backbone_channels or any(c <= 0 for c in self.image_backbone_channels):
            raise ValueError(f"image_backbone_channels must be positive ints, got {self.image_backbone_channels}")
        if self.action_groups is not None:
            validate_action_groups(self.action_groups, action_dim=None)

    def make_policy(self, info: "DatasetInfo") -> "ACTPolicy":
        from chunkwise.policies.act.policy import ACTPolicy

        return ACTPolicy(self, info)


def validate_action_groups(groups: dict[str, list[int]], action_dim: int | None) -> list[tuple[str, int, int]]:
    """Check that groups are [start, end) slices tiling [0, action_dim) without gaps or overlaps.

    Returns ``[(name, start, end), ...]`` sorted by start. With ``action_dim=None`` only the
    shape of each slice and overlaps are checked (the action dim is known later).
    """
    if not groups:
        raise ValueError("action_groups must name at least one group (or be null for one head)")
    slices = []
    for name, sl in groups.items():
        if len(sl) != 2 or not all(isinstance(v, int) for v in sl):
            raise ValueError(f"action group {name!r} must be [start, end], got {sl!r}")
        start, end = sl
        if not 0 <= start < end:
            raise ValueError(f"action group {name!r} = [{start}, {end}] is empty or negative (need 0 <= start < end)")
        slices.append((name, start, end))
    slices.sort(key=lambda s: s[1])
    pos = 0
    for name, start, end in slices:
        if start < pos:
            raise ValueError(f"action group {name!r} = [{start}, {end}] overlaps the previous group (ends at {pos})")
        if action_dim is not None and start > pos:
            raise ValueError(f"action dims [{pos}, {start}) belong to no action group; groups: {groups}")
        pos = end
    if action_dim is not None and pos != action_dim:
        raise ValueError(f"action groups cover [0, {pos}) but the action has {action_dim} dims; groups: {groups}")
    return slices
