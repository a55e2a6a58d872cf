"""Flow-matching action head (GR00T / pi0 style) sized for CPU.

    observation ──► ObservationEncoder ──► obs tokens  [state, task, camera patches]   (K/V)
                                      └──► state token
    x_t, t ──► ActionEncoder ──► action tokens (one per chunk index, per-token timestep)

    hidden = [state token | future tokens | action tokens]
          ──► n × DiTBlock( self-attn(hidden), cross-attn(hidden → obs tokens), MLP;
                           every sub-layer modulated by adaLN(timestep embedding) )
          ──► action decoder on the action tokens ──► velocity (B, H, A)

The observation encoding (``ObsEncoding``) is computed once per request and reused by all
denoising steps and by the delta expert.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chunkwise.policies.common.embeddings import sinusoidal_embedding
from chunkwise.policies.common.trainable import forced_steps
from chunkwise.policies.common.vision import ConvBackbone
from chunkwise.policies.flow.config import FlowConfig


def discretize_time(t: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """t in [0, 1] -> bucket index floor(t·n), clamped to n-1 (so t = 1 is the last bucket)."""
    return (t * n_buckets).long().clamp(0, n_buckets - 1)


class TimestepEmbedding(nn.Module):
    """Discretized timestep -> vector (sinusoid of the bucket index, then an MLP)."""

    def __init__(self, dim: int, n_buckets: int) -> None:
        super().__init__()
        self.dim, self.n_buckets = dim, n_buckets
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(discretize_time(t, self.n_buckets).float(), self.dim))


def task_bucket(task: str, n_buckets: int) -> int:
    """Stable across processes (Python's hash() is salted)."""
    return zlib.crc32(task.encode("utf-8")) % n_buckets


class CameraTokens(nn.Module):
    """uint8 (B, H, W, 3) -> (B, 16, D): shared small CNN, pooled to a 4×4 grid, projected."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.backbone = ConvBackbone((16, 32, 64))
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.proj = nn.Linear(self.backbone.out_channels, dim)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.backbone(images)).flatten(2).transpose(1, 2)) + self.pos


@dataclass
class ObsEncoding:
    """Cached per request: cross-attention tokens and the state token."""

    tokens: torch.Tensor  # (B, T_obs, D)
    state_token: torch.Tensor  # (B, 1, D)

    def index(self, idx: torch.Tensor | slice) -> "ObsEncoding":
        return ObsEncoding(self.tokens[idx], self.state_token[idx])


class ObservationEncoder(nn.Module):
    def __init__(self, cfg: FlowConfig, state_dim: int, n_cameras: int = 0) -> None:
        super().__init__()
        D = cfg.dim_model
        self.n_task_buckets = cfg.n_task_buckets
        self.state_mlp = nn.Sequential(nn.Linear(state_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.task_embedding = nn.Embedding(cfg.n_task_buckets, D)
        self.cnns = nn.ModuleList(CameraTokens(D) for _ in range(n_cameras))
        # which kind of token (state, task, camera k): added so attention can tell them apart
        self.type_embedding = nn.Parameter(torch.randn(2 + n_cameras, D) * 0.02)

    def forward(self, state: torch.Tensor, tasks: Sequence[str], images: Sequence[torch.Tensor] = ()) -> ObsEncoding:
        s = self.state_mlp(state).unsqueeze(1)
        ids = torch.tensor([task_bucket(t, self.n_task_buckets) for t in tasks], device=state.device)
        tokens = [s + self.type_embedding[0], self.task_embedding(ids).unsqueeze(1) + self.type_embedding[1]]
        for k, (cnn, img) in enumerate(zip(self.cnns, images)):
            tokens.append(cnn(img) + self.type_embedding[2 + k])
        return ObsEncoding(torch.cat(tokens, dim=1), s)


class ActionEncoder(nn.Module):
    """GR00T-style: W3·swish(W2·[W1·a ; τ-emb]) + chunk-position embedding, per token."""

    def __init__(self, action_dim: int, dim: int, chunk_size: int, n_buckets: int) -> None:
        super().__init__()
        self.time = TimestepEmbedding(dim, n_buckets)
        self.w1 = nn.Linear(action_dim, dim)
        self.w2 = nn.Linear(2 * dim, dim)
        self.w3 = nn.Linear(dim, dim)
        self.pos = nn.Parameter(torch.randn(1, chunk_size, dim) * 0.02)

    def forward(self, x_t: torch.Tensor, token_t: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.w1(x_t), self.time(token_t)], dim=-1)
        return self.w3(F.silu(self.w2(h))) + self.pos[:, : x_t.shape[1]]


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Self-attention, cross-attention to obs tokens, MLP; adaLN-Zero conditioning on t."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.cross_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        # adaLN-Zero: every block starts as the identity, which keeps early training stable.
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, k1, g1, s2, k2, g2, s3, k3, g3 = self.ada(c).chunk(9, dim=-1)
        h = _modulate(self.norm1(x), s1, k1)
        x = x + g1.unsqueeze(1) * self.self_attn(h, h, h, need_weights=False)[0]
        h = _modulate(self.norm2(x), s2, k2)
        x = x + g2.unsqueeze(1) * self.cross_attn(h, ctx, ctx, need_weights=False)[0]
        h = _modulate(self.norm3(x), s3, k3)
        return x + g3.unsqueeze(1) * self.mlp(h)


class VelocityNet(nn.Module):
    """v(x_t, t | obs): one action expert (the base head, or the delta expert)."""

    def __init__(self, cfg: FlowConfig, action_dim: int, n_blocks: int) -> None:
        super().__init__()
        D = cfg.dim_model
        self.action_encoder = ActionEncoder(action_dim, D, cfg.chunk_size, cfg.num_timestep_buckets)
        self.future_tokens = nn.Parameter(torch.randn(1, cfg.n_future_tokens, D) * 0.02)
        self.time = TimestepEmbedding(D, cfg.num_timestep_buckets)
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.n_heads, cfg.mlp_ratio) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.action_decoder = nn.Linear(D, action_dim)
        nn.init.zeros_(self.final_ada[1].weight)
        nn.init.zeros_(self.final_ada[1].bias)

    def forward(
        self, obs: ObsEncoding, x_t: torch.Tensor, t: torch.Tensor, token_t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t (B, H, A); t (B,) drives adaLN; token_t (B, H) per action token (default t)."""
        B, H, _ = x_t.shape
        if token_t is None:
            token_t = t.unsqueeze(1).expand(B, H)
        act = self.action_encoder(x_t, token_t)
        hidden = torch.cat([obs.state_token, self.future_tokens.expand(B, -1, -1), act], dim=1)
        c = self.time(t)
        for block in self.blocks:
            hidden = block(hidden, obs.tokens, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        out = _modulate(self.final_norm(hidden[:, -H:]), shift, scale)
        return self.action_decoder(out)


def sample_time(cfg: FlowConfig, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training t (0 = noise, 1 = data), scaled into [time_min, time_max].

    beta: pi0 / GR00T draw a *noise level* s ~ Beta(α=1.5, β=1) (density ∝ s^0.5, more
    mass at high noise); in our convention t = 1 − s, so most samples sit near the noise
    end, where the Euler integration from noise starts and errors matter most.
    uniform: t ~ U(0, 1).
    """
    if cfg.time_schedule == "beta":
        # Beta via two Gammas (torch.distributions has no generator argument; the trainer
        # seeds the global generator per step, which keeps resume exact).
        a = torch.distributions.Gamma(cfg.time_beta_alpha, 1.0).sample((batch,))
        b = torch.distributions.Gamma(cfg.time_beta_beta, 1.0).sample((batch,))
        u = 1.0 - a / (a + b)
    else:
        u = torch.rand(batch, generator=generator)
    return cfg.time_min + (cfg.time_max - cfg.time_min) * u


class FlowModel(nn.Module):
    """Observation encoder + base velocity net (+ optional delta expert). Works in
    normalized units; the policy wrapper (de)normalizes."""

    def __init__(self, cfg: FlowConfig, state_dim: int, action_dim: int, n_cameras: int = 0) -> None:
        super().__init__()
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        self.obs_encoder = ObservationEncoder(cfg, state_dim, n_cameras)
        self.velocity_net = VelocityNet(cfg, action_dim, cfg.n_blocks)
        self.delta = None
        if cfg.delta_expert:
            from chunkwise.policies.flow.delta_expert import DeltaExpert

            self.delta = DeltaExpert(cfg, action_dim)

    def encode_obs(self, state: torch.Tensor, tasks: Sequence[str], images: Sequence[torch.Tensor] = ()) -> ObsEncoding:
        return self.obs_encoder(state, tasks, images)

    def velocity(self, obs: ObsEncoding, x_t: torch.Tensor, t: float | torch.Tensor,
                 token_t: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.full((x_t.shape[0],), float(t), device=x_t.device)
        return self.velocity_net(obs, x_t, t, token_t)

    def flow_loss(
        self,
        obs: ObsEncoding,
        actions: torch.Tensor,
        action_is_pad: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        prefix_length: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE(v_θ(x_t, t), actions − noise) over real (non-padded) chunk steps.

        With ``rtc_training`` an example is delayed with probability ``rtc_training_prob`` and
        then draws d ~ U{0..rtc_max_delay} (otherwise d = 0): indices i < d are the clean
        actions with per-token time 1 and are excluded from the loss.

        ``prefix_length`` (B,) marks forced actions (prefix branches, data/branches.py): they
        are a stale plan, not the expert's choice, so they never get a loss, and with
        ``rtc_training`` they are always part of the clean prefix: d = max(d, prefix_length).
        """
        cfg = self.cfg
        B, H, A = actions.shape
        noise = torch.randn(actions.shape, generator=generator)
        t = sample_time(cfg, B, generator).to(actions)
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * actions
        token_t = t.unsqueeze(1).expand(B, H).clone()
        mask = torch.ones(B, H, dtype=torch.bool) if action_is_pad is None else ~action_is_pad.bool()
        if cfg.rtc_training:
            d = torch.randint(0, cfg.rtc_max_delay + 1, (B,), generator=generator)
            delayed = torch.rand(B, generator=generator) < cfg.rtc_training_prob
            d = torch.where(delayed, d, torch.zeros_like(d))
            if prefix_length is not None:
                d = torch.maximum(d, prefix_length.long())
            prefix = forced_steps(d, H)
            x_t = torch.where(prefix.unsqueeze(-1), actions, x_t)
            token_t = torch.where(prefix, torch.ones_like(token_t), token_t)
            mask = mask & ~prefix
        elif prefix_length is not None:
            mask = mask & ~forced_steps(prefix_length, H)
        v = self.velocity_net(obs, x_t, t, token_t)
        sq = ((v - (actions - noise)) ** 2) * mask.unsqueeze(-1)
        loss = sq.sum() / (mask.sum() * A).clamp(min=1)
        return loss, {"flow_loss": float(loss.detach())}
