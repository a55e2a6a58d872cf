"""Delta expert with action context.

The client sends the next N (default 5) queued actions with the observation; a second
action expert starts from their encoding instead of from noise and outputs a chunk that
continues what is already queued.

Timestep alignment (the contract tests check)::

    control step:        t      t+1     ...   t+N-1    ...      t+H-1
    observation:        obs_t (captured at step t, before a_t executes)
    action_context[i]:  q_t    q_{t+1}  ...   q_{t+N-1}           = Prefix.actions[i], i < N
    output chunk[i]:    a_t    a_{t+1}  ...   a_{t+N-1} ... a_{t+H-1}
    training context:   batch["action"][:, :N]   (ground truth for the same steps t..t+N-1)

i.e. context index i and output index i are the *same* control step obs_timestep + i. The
executor drops output indices < delay (already executed from the queue).

Generation (the encoded context is treated as x at flow time t0 = ``delta_timestep``)::

    x_{t0} = encode_action_context(context)     (zeros if fewer than N actions are queued)
    x_{t+Δ} = x_t + Δ · v_δ(x_t, t | obs),  t = t0, t0+Δ, ..., Δ = (1 - t0)/delta_num_steps

Training uses the straight path from x_{t0} to the true chunk a:
x_t = x_{t0} + (t - t0)/(1 - t0)·(a - x_{t0}), target v = (a - x_{t0})/(1 - t0), so one
Euler step from t0 lands exactly on a when the net is perfect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chunkwise.policies.common.trainable import forced_steps
from chunkwise.policies.flow.config import FlowConfig
from chunkwise.policies.flow.model import ObsEncoding, VelocityNet


def resample_to_chunk(x: torch.Tensor, chunk_size: int, fill: str = "tile") -> torch.Tensor:
    """(B, N, A) -> (B, chunk_size, A).

    N < H: ``tile`` repeats the whole sequence (a repeat-fill: q0..q4, q0..q4, ...);
    ``hold_last`` keeps q0..q_{N-1} and repeats the last action. N > H: linear interpolation
    over the N points (endpoints kept). N == H: unchanged.
    """
    B, N, A = x.shape
    if N == chunk_size:
        return x
    if N > chunk_size:
        return F.interpolate(x.transpose(1, 2), size=chunk_size, mode="linear", align_corners=True).transpose(1, 2)
    if fill == "tile":
        reps = -(-chunk_size // N)
        return x.repeat(1, reps, 1)[:, :chunk_size]
    if fill == "hold_last":
        return torch.cat([x, x[:, -1:].expand(B, chunk_size - N, A)], dim=1)
    raise ValueError(f"context fill {fill!r} unknown; valid: ['tile', 'hold_last']")


class DeltaExpert(nn.Module):
    def __init__(self, cfg: FlowConfig, action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.dim_model
        # the context encoder: Linear(action_dim -> hidden) -> ReLU -> Linear(hidden -> action_dim)
        self.action_context_encoder = nn.Sequential(nn.Linear(action_dim, D), nn.ReLU(), nn.Linear(D, action_dim))
        self.net = VelocityNet(cfg, action_dim, cfg.delta_n_blocks)

    def encode_action_context(self, action_context: torch.Tensor) -> torch.Tensor:
        """(B, N, A) -> (B, H, A): encode each action, then fill / interpolate to H."""
        return resample_to_chunk(self.action_context_encoder(action_context), self.cfg.chunk_size, self.cfg.context_fill)

    def _start(self, action_context: torch.Tensor | None, has_context: torch.Tensor | None, B: int, A: int,
               device: torch.device) -> torch.Tensor:
        H = self.cfg.chunk_size
        if action_context is None:
            return torch.zeros(B, H, A, device=device)
        x0 = self.encode_action_context(action_context)
        if has_context is not None:  # per-element zeros fallback
            x0 = torch.where(has_context.view(B, 1, 1), x0, torch.zeros_like(x0))
        return x0

    def generate_delta_actions(
        self,
        obs: ObsEncoding,
        action_context: torch.Tensor | None,
        has_context: torch.Tensor | None = None,
        action_dim: int | None = None,
    ) -> torch.Tensor:
        """Chunk (B, H, A) from the encoded context (or zeros) at t0, Euler to t = 1.

        ``action_context`` (B, N, A) in normalized units; ``has_context`` (B,) bool marks
        elements whose queue held at least N actions (others start from zeros).
        """
        cfg = self.cfg
        B = obs.tokens.shape[0]
        A = action_context.shape[-1] if action_context is not None else int(action_dim)
        x = self._start(action_context, has_context, B, A, obs.tokens.device)
        t0, n = cfg.delta_timestep, cfg.delta_num_steps
        dt = (1.0 - t0) / n
        for k in range(n):
            t = torch.full((B,), t0 + k * dt, device=x.device)
            x = x + dt * self.net(obs, x, t)
        return x

    def perturb_context(self, context: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``chunk_error`` noise: a stale plan is off by a roughly constant offset plus a drift
        growing along the chunk, not by white noise. ctx_i + o + r·(i+1)/N, o, r ~ N(0, σ²)."""
        if self.cfg.context_noise == "none" or self.cfg.context_noise_std == 0:
            return context
        B, N, A = context.shape
        sigma = self.cfg.context_noise_std
        offset = torch.randn(B, 1, A, generator=generator) * sigma
        drift = torch.randn(B, 1, A, generator=generator) * sigma
        ramp = torch.arange(1, N + 1, dtype=context.dtype).view(1, N, 1) / N
        return context + offset + drift * ramp

    def forward_delta_expert(
        self,
        obs: ObsEncoding,
        actions: torch.Tensor,
        action_is_pad: torch.Tensor | None = None,
        action_context: torch.Tensor | None = None,
        use_context: bool = True,
        generator: torch.Generator | None = None,
        prefix_length: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss. Context defaults to the ground truth ``actions[:, :N]`` (seed
        option 1, aligned to the same steps as the target chunk); ``use_context=False`` is
        the zero-context option 2; ``delta_zero_context_prob`` mixes option 2 in per example.
        Indices ``< prefix_length`` (forced stale-plan actions of a prefix branch) get no loss:
        they run from the queue anyway (the executor drops output indices < delay), and past
        the N context actions they could not be predicted.
        """
        cfg = self.cfg
        B, H, A = actions.shape
        N = cfg.action_context_length
        if use_context and action_context is None:
            action_context = actions[:, :N]
        has = None
        if use_context:
            action_context = self.perturb_context(action_context, generator)
            has = torch.rand(B, generator=generator) >= cfg.delta_zero_context_prob
        x0 = self._start(action_context if use_context else None, has, B, A, actions.device)
        t0 = cfg.delta_timestep
        if cfg.delta_num_steps == 1:
            t = torch.full((B,), t0)
        else:
            t = t0 + (1 - t0) * torch.rand(B, generator=generator)
        frac = ((t - t0) / (1 - t0))[:, None, None]
        x_t = x0 + frac * (actions - x0)
        target = (actions - x0) / (1 - t0)
        v = self.net(obs, x_t, t)
        mask = torch.ones(B, H, dtype=torch.bool) if action_is_pad is None else ~action_is_pad.bool()
        if prefix_length is not None:
            mask = mask & ~forced_steps(prefix_length, H)
        sq = ((v - target) ** 2) * mask.unsqueeze(-1)
        # Scale by (1 - t0)^2 so the loss is the error of the *landed chunk*, comparable to flow_loss.
        loss = sq.sum() / (mask.sum() * A).clamp(min=1) * (1 - t0) ** 2
        return loss, {"delta_loss": float(loss.detach())}
