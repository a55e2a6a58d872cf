"""``ACTPolicy``: the ACT network wrapped as a chunkwise Policy, with its own normalization.

Pre-processing: state -> (state - mean) / std; images stay uint8 until the backbone.
Post-processing: normalized chunk -> chunk * std + mean (dataset action stats).
The stats are module buffers saved in the checkpoint's ``stats.safetensors``, never in the
config, so one config trains on any dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.act.model import ACTModel, kl_divergence
from chunkwise.policies.common.checkpoint import PolicyFilesMixin
from chunkwise.policies.common.normalize import Normalizer
from chunkwise.policies.common.trainable import DatasetInfo, forced_steps
from chunkwise.policies.registry import register_loader
from chunkwise.types import ACTION, OBS_STATE, PREFIX_LENGTH, PolicyMetadata, Prefix

ACTION_IS_PAD = "action_is_pad"


class ACTPolicy(PolicyFilesMixin, nn.Module):
    """Build with ``ACTConfig.make_policy(info)`` or ``ACTPolicy.from_pretrained(path)``."""

    policy_type = "act"

    def __init__(self, config: ACTConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.state_key = OBS_STATE if info.state_dim > 0 else None
        self.image_keys = info.image_keys if config.use_images else []
        if config.use_images and not self.image_keys:
            raise ValueError("ACTConfig.use_images is true but the dataset has no observation.images.* keys")
        modes: dict[str, Any] = {ACTION: "mean_std"}
        if self.state_key:
            modes[self.state_key] = "mean_std"
        self.normalizer = Normalizer(info.stats, modes)
        self.model = ACTModel(config, info.state_dim, info.action_dim, n_cameras=len(self.image_keys))
        used = ([self.state_key] if self.state_key else []) + self.image_keys
        self._metadata = PolicyMetadata(
            observation_spec={k: info.observation_spec[k] for k in used},
            action_dim=info.action_dim,
            chunk_size=config.chunk_size,
            fps=info.fps,
            policy_type="act",
            extra={"n_action_steps": config.n_action_steps, "task": info.task},
        )

    # -- Policy protocol -------------------------------------------------------------------
    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def reset(self) -> None:
        """ACT keeps no state between calls (queues live in the executor)."""

    @torch.no_grad()
    def predict_chunk(self, obs_batch: Mapping[str, Any], prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        """Observation batch (numpy) -> (B, H, A) float32 actions in env units. ``prefix`` is ignored."""
        was_training = self.training
        self.eval()
        try:
            state, images = self._inputs(obs_batch, numpy=True)
            out, _, _ = self.model(state, images)
            return self.normalizer.unnormalize(ACTION, out).cpu().numpy().astype(np.float32)
        finally:
            self.train(was_training)

    # -- training ----------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """loss = masked mean |a_hat - a| (normalized units) + kl_weight * KL."""
        for key in (ACTION, ACTION_IS_PAD):
            if key not in batch:
                raise KeyError(f"training batch lacks {key!r} (has {sorted(batch)})")
        state, images = self._inputs(batch, numpy=False)
        target = self.normalizer.normalize(ACTION, batch[ACTION].float())
        is_pad = batch[ACTION_IS_PAD].bool()
        pred, mu, log_var = self.model(state, images, target, is_pad)
        valid = ~is_pad
        forced = forced_steps(batch.get(PREFIX_LENGTH), valid.shape[1])
        if forced is not None:  # a prefix branch's stale-plan actions are not the expert's
            valid = valid & ~forced
        valid = valid.unsqueeze(-1).float()
        l1 = ((pred - target).abs() * valid).sum() / (valid.sum() * target.shape[-1]).clamp(min=1.0)
        terms = {"l1": float(l1.detach())}
        loss = l1
        if mu is not None and log_var is not None:
            kl = kl_divergence(mu, log_var)
            loss = loss + self.config.kl_weight * kl
            terms["kl"] = float(kl.detach())
        terms["loss"] = float(loss.detach())
        return loss, terms

    def _inputs(self, batch: Mapping[str, Any], numpy: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        device = self.model.queries.weight.device
        state = None
        if self.state_key:
            if self.state_key not in batch:
                raise KeyError(f"batch lacks {self.state_key!r}, which this ACT policy reads (has {sorted(batch)})")
            raw = torch.as_tensor(np.asarray(batch[self.state_key], dtype=np.float32)) if numpy else batch[self.state_key]
            if raw.ndim != 2 or raw.shape[-1] != self.info.state_dim:
                raise ValueError(f"{self.state_key} must be (B, {self.info.state_dim}), got {tuple(raw.shape)}")
            state = self.normalizer.normalize(self.state_key, raw.float().to(device))
        images = []
        for key in self.image_keys:
            if key not in batch:
                raise KeyError(f"batch lacks {key!r}, which this ACT policy reads (has {sorted(batch)})")
            img = torch.as_tensor(np.asarray(batch[key])) if numpy else batch[key]
            if img.ndim != 4:
                raise ValueError(f"{key} must be (B, H, W, 3) uint8, got {tuple(img.shape)}")
            images.append(img.to(device))
        return state, images

    # -- checkpoints: weights / save_into / save_pretrained / from_pretrained: PolicyFilesMixin
    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> "ACTPolicy":
        from chunkwise.policies.lerobot.files import is_lerobot_checkpoint, not_chunkwise_error

        if is_lerobot_checkpoint(directory):  # LeRobot writes "type": "act" too
            raise not_chunkwise_error(directory, "ACT")
        return super().from_pretrained(directory, **overrides)


def _load(path: Path) -> ACTPolicy:
    return ACTPolicy.from_pretrained(path)


register_loader("act", _load)

