"""``FlowPolicy``: the flow-matching head wrapped as a chunkwise Policy (and TrainablePolicy).

``predict_chunk(obs_batch, prefix)`` runs, per ``config.prefix_mode``:

    none          Euler from noise, ``num_inference_steps`` steps (prefix ignored)
    rtc_guided    Euler + RTC guidance toward the queued prefix (policies/rtc.py)
    rtc_trained   Euler with indices < d set to the queued actions at flow time 1
                  (needs ``rtc_training``; no extra compute)
    delta_expert  delta expert from the encoded action context

The observation is encoded once per request; every denoising step (and the delta expert)
reuses it. Queued prefix actions arrive in env units and are normalized like the targets.
A batch element whose prefix is None (or too short) falls back to plain sampling (RTC) or
to the zeros context (delta expert).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from chunkwise.policies import rtc
from chunkwise.policies.base import Policy
from chunkwise.policies.common.checkpoint import PolicyFilesMixin
from chunkwise.policies.common.normalize import Normalizer
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.policies.flow.config import FlowConfig, PrefixMode
from chunkwise.policies.flow.model import FlowModel, ObsEncoding
from chunkwise.policies.registry import register_loader
from chunkwise.types import ACTION, OBS_STATE, PREFIX_LENGTH, TASK, PolicyMetadata, Prefix

ACTION_IS_PAD = "action_is_pad"


class FlowPolicy(PolicyFilesMixin, nn.Module):
    """Build with ``FlowConfig.make_policy(info)`` or ``FlowPolicy.from_pretrained(path)``."""

    policy_type = "flow"

    def __init__(self, config: FlowConfig, info: DatasetInfo) -> None:
        super().__init__()
        if info.state_dim <= 0:
            raise ValueError("the flow policy needs observation.state in the dataset")
        self.config = config
        self.info = info
        self.image_keys = info.image_keys if config.use_images else []
        if config.use_images and not self.image_keys:
            raise ValueError("FlowConfig.use_images is true but the dataset has no observation.images.* keys")
        self.normalizer = Normalizer(info.stats, {ACTION: "mean_std", OBS_STATE: "mean_std"})
        self.model = FlowModel(config, info.state_dim, info.action_dim, n_cameras=len(self.image_keys))
        self._generator = torch.Generator().manual_seed(config.seed)

    # -- Policy protocol -------------------------------------------------------------------
    @property
    def metadata(self) -> PolicyMetadata:
        cfg = self.config
        used = [OBS_STATE] + self.image_keys
        return PolicyMetadata(
            observation_spec={k: self.info.observation_spec[k] for k in used},
            action_dim=self.info.action_dim,
            chunk_size=cfg.chunk_size,
            fps=self.info.fps,
            policy_type="flow",
            prefix_length=self.prefix_modes().get(cfg.prefix_mode) if cfg.uses_prefix else None,
            prefix_modes=self.prefix_modes(),
            extra={"n_action_steps": cfg.n_action_steps, "task": self.info.task, "prefix_mode": cfg.prefix_mode},
        )

    def prefix_modes(self) -> dict[str, int]:
        """Modes this checkpoint can run -> the prefix_length each wants (PolicyMetadata)."""
        modes = {"rtc_guided": 0}
        if self.config.rtc_training:
            modes["rtc_trained"] = 0
        if self.model.delta is not None:
            modes["delta_expert"] = self.config.action_context_length
        return modes

    def with_prefix_mode(self, mode: PrefixMode) -> Policy:
        """This policy seen through one prefix mode (shares the weights; see strategies.py)."""
        from chunkwise.policies.flow.strategies import PrefixModeView

        return PrefixModeView(self, mode)

    def set_prefix_mode(self, mode: PrefixMode, **rtc_overrides: Any) -> None:
        """Switch the inference strategy of a loaded policy (validated like the config)."""
        rtc_cfg = rtc.RTCConfig(**{**vars(self.config.rtc), **rtc_overrides})
        probe = FlowConfig(**{**vars(self.config), "prefix_mode": mode, "rtc": rtc_cfg})  # validates
        self.config.prefix_mode, self.config.rtc = probe.prefix_mode, probe.rtc

    def reset(self) -> None:
        """Re-seed the sampling noise so that an episode with the same seed replays exactly."""
        self._generator.manual_seed(self.config.seed)

    @torch.no_grad()
    def predict_chunk(
        self,
        obs_batch: Mapping[str, Any],
        prefix: Sequence[Prefix | None] | None = None,
        prefix_mode: PrefixMode | None = None,
    ) -> np.ndarray:
        """(B, H, A) float32 in env units; ``prefix_mode`` overrides ``config.prefix_mode``."""
        mode = self.config.prefix_mode if prefix_mode is None else prefix_mode
        self._check_mode(mode)
        was_training = self.training
        self.eval()
        try:
            obs = self.encode(obs_batch, numpy=True)
            B, H, A = obs.tokens.shape[0], self.config.chunk_size, self.info.action_dim
            prefixes = list(prefix) if prefix is not None else [None] * B
            if len(prefixes) != B:
                raise ValueError(f"got {len(prefixes)} prefixes for a batch of {B} observations")
            noise = torch.randn(B, H, A, generator=self._generator)
            out = self.sample(obs, noise, prefixes, mode)
            return self.normalizer.unnormalize(ACTION, out).cpu().numpy().astype(np.float32)
        finally:
            self.train(was_training)

    # -- inference pieces --------------------------------------------------------------------
    def encode(self, batch: Mapping[str, Any], numpy: bool = False) -> ObsEncoding:
        if OBS_STATE not in batch:
            raise KeyError(f"batch lacks {OBS_STATE!r}, which the flow policy reads (has {sorted(batch)})")
        raw = torch.tensor(np.asarray(batch[OBS_STATE], dtype=np.float32)) if numpy else batch[OBS_STATE]
        if raw.ndim != 2 or raw.shape[-1] != self.info.state_dim:
            raise ValueError(f"{OBS_STATE} must be (B, {self.info.state_dim}), got {tuple(raw.shape)}")
        state = self.normalizer.normalize(OBS_STATE, raw.float())
        tasks = batch.get(TASK)
        if tasks is None:
            # A caller without a task (a bare observation dict) means the dataset's task, never
            # "": embedding "" at one side and "push-v3" at the other once cost ~4x action error.
            tasks = self.info.task
        tasks = [tasks] * state.shape[0] if isinstance(tasks, str) else list(tasks)
        images = []
        for key in self.image_keys:
            if key not in batch:
                raise KeyError(f"batch lacks {key!r}, which this flow policy reads (has {sorted(batch)})")
            images.append(torch.as_tensor(np.asarray(batch[key])) if numpy else batch[key])
        return self.model.encode_obs(state, tasks, images)

    def _prefix_tensors(self, prefixes: list[Prefix | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> Y (B, H, A) normalized queued actions (zero-filled), length N_b (B,), delay d_b (B,)."""
        H, A = self.config.chunk_size, self.info.action_dim
        Y = torch.zeros(len(prefixes), H, A)
        lengths = torch.zeros(len(prefixes), dtype=torch.long)
        delays = torch.zeros(len(prefixes), dtype=torch.long)
        for b, p in enumerate(prefixes):
            if p is None or len(p.actions) == 0:
                continue
            if p.actions.shape[1] != A:
                raise ValueError(f"prefix {b} has action dim {p.actions.shape[1]}, policy has {A}")
            n = min(len(p.actions), H)
            Y[b, :n] = self.normalizer.normalize(ACTION, torch.as_tensor(p.actions[:n]))
            lengths[b] = n
            delays[b] = min(p.delay, n)  # the queue cannot freeze more than it holds
        return Y, lengths, delays

    def _check_mode(self, mode: str) -> None:
        if mode not in ("none", "rtc_guided", "rtc_trained", "delta_expert"):
            raise ValueError(f"prefix_mode {mode!r} unknown; valid: none, rtc_guided, rtc_trained, delta_expert")
        if mode == "rtc_trained" and not self.config.rtc_training:
            raise ValueError("prefix_mode 'rtc_trained' needs a policy trained with rtc_training=True")
        if mode == "delta_expert" and self.model.delta is None:
            raise ValueError("prefix_mode 'delta_expert' needs a policy trained with delta_expert=True")

    def sample(self, obs: ObsEncoding, noise: torch.Tensor, prefixes: list[Prefix | None],
               mode: PrefixMode | None = None) -> torch.Tensor:
        """Normalized chunk (B, H, A) for ``mode`` (default: the configured prefix mode)."""
        cfg = self.config
        mode = cfg.prefix_mode if mode is None else mode
        if all(p is None for p in prefixes) and mode != "delta_expert":
            mode = "none"  # nothing queued to continue from
        steps = cfg.num_inference_steps

        def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
            return self.model.velocity(obs, x, t)

        if mode == "none":
            return rtc.euler_sample(velocity, noise, steps)
        Y, lengths, delays = self._prefix_tensors(prefixes)
        if mode == "rtc_guided":
            W = torch.stack([
                rtc.prefix_weights(int(delays[b]), cfg.chunk_size, cfg.rtc.schedule, cfg.rtc.execution_horizon,
                                   prefix_len=int(lengths[b]))
                for b in range(len(prefixes))
            ])
            return rtc.rtc_sample(velocity, noise, steps, Y, W, cfg.rtc.max_guidance_weight, delays, cfg.rtc.hard_prefix)
        if mode == "rtc_trained":
            return self._sample_trained_prefix(obs, noise, Y, delays)
        # delta_expert: context = queued actions for steps obs_t .. obs_t+N-1 (see delta_expert.py)
        N = cfg.action_context_length
        assert self.model.delta is not None
        has = lengths >= N
        out = self.model.delta.generate_delta_actions(obs, Y[:, :N], has_context=has)
        if cfg.delta_fallback == "base_flow" and not bool(has.all()):
            # improved variant: without a full context, sample the base head instead of
            # running the delta expert from zeros
            idx = (~has).nonzero().flatten()
            base = rtc.euler_sample(lambda x, t: self.model.velocity(obs.index(idx), x, t), noise[idx], steps)
            out[idx] = base
        return out

    def _sample_trained_prefix(self, obs: ObsEncoding, noise: torch.Tensor, Y: torch.Tensor,
                               delays: torch.Tensor) -> torch.Tensor:
        """Training-time RTC at inference: indices < d hold Y with per-token time 1 at every
        step, exactly as in training; d is capped at ``rtc_max_delay`` (never seen beyond)."""
        cfg = self.config
        B, H, _ = noise.shape
        d = delays.clamp(max=cfg.rtc_max_delay)
        frozen = torch.arange(H).unsqueeze(0) < d.unsqueeze(1)  # (B, H)
        dt = 1.0 / cfg.num_inference_steps
        x = noise
        for k in range(cfg.num_inference_steps):
            t = torch.full((B,), k * dt)
            x = torch.where(frozen.unsqueeze(-1), Y, x)
            token_t = torch.where(frozen, torch.ones(B, H), t.unsqueeze(1).expand(B, H))
            x = x + dt * self.model.velocity_net(obs, x, t, token_t)
        return torch.where(frozen.unsqueeze(-1), Y, x)

    # -- training ----------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """flow loss (+ rtc_training prefix) + delta_loss_weight · delta-expert loss, normalized units."""
        if ACTION not in batch:
            raise KeyError(f"training batch lacks {ACTION!r} (has {sorted(batch)})")
        obs = self.encode(batch)
        actions = self.normalizer.normalize(ACTION, batch[ACTION].float())
        is_pad = batch.get(ACTION_IS_PAD)
        forced = batch.get(PREFIX_LENGTH)  # prefix branches only (data/branches.py)
        loss, terms = self.model.flow_loss(obs, actions, is_pad, prefix_length=forced)
        if self.model.delta is not None:
            d_loss, d_terms = self.model.delta.forward_delta_expert(obs, actions, is_pad, prefix_length=forced)
            loss = loss + self.config.delta_loss_weight * d_loss
            terms.update(d_terms)
        terms["loss"] = float(loss.detach())
        return loss, terms

    # -- checkpoints: weights / save_into / save_pretrained / from_pretrained: PolicyFilesMixin


def _load(path: Path) -> FlowPolicy:
    return FlowPolicy.from_pretrained(path)


register_loader("flow", _load)
