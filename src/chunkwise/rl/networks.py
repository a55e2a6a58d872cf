"""Actors (mlp | act | sequence_act) and the critic ensemble for SAC over action chunks.

All actors take raw observations ``obs`` of shape (B, T, S) (T = observation history
length, 1 for ``mlp`` and ``act``; the last entry is the current state), normalise them
with their own ``obs_mean``/``obs_std`` buffers (so ``get_weights()`` is a deployable
policy), and output per-step tanh-Gaussian parameters (B, H, A)::

    mlp           state -> MLP -> [mean | log_std] over the flattened H*A chunk
    act           state -> Linear -> 1 memory token
                  H learned chunk queries -> TransformerDecoder(self-attn over queries,
                  cross-attn to the memory token) -> mean head, log_std head per step
                  (no transformer encoder: one observation is no sequence, seed 003)
    sequence_act  T states -> Linear + sinusoidal position -> TransformerEncoder -> memory
                  decoder as in ``act``; with ``autoregressive`` the decoder input of step
                  i is [start, emb(a_0), ..., emb(a_{i-1})] under a causal mask (seed 004)

Critics see the current state only (the last history entry) and a flattened chunk.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from chunkwise.rl.config import ActorConfig, CriticConfig
from chunkwise.rl.distributions import ChunkSample, sample_chunk, tanh_gaussian_log_prob


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.ReLU())
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def sinusoidal_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed table: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: table[:, 1::2].shape[1]])
    return table


class _Normalizer(nn.Module):
    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 1e-2) -> None:
        """std -> max(std, floor): tiny std (constant dims such as MetaWorld's zero padding) would blow up inputs."""
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(floor))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std


class ChunkActor(_Normalizer):
    """Base class: subclasses implement ``_params(obs_n) -> (mean, raw_log_std)``."""

    def __init__(self, obs_dim: int, action_dim: int, chunk_size: int, history: int, cfg: ActorConfig) -> None:
        super().__init__(obs_dim)
        self.obs_dim, self.action_dim, self.chunk_size, self.history = obs_dim, action_dim, chunk_size, history
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def _squash_log_std(self, raw: torch.Tensor) -> torch.Tensor:
        return self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1.0)

    def _params(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-squash (mean, log_std), each (B, H, A)."""
        mean, raw = self._params(self.normalize(obs))
        return mean, self._squash_log_std(raw)

    def forward(self, obs: torch.Tensor, deterministic: bool = False, return_sequence: bool = True) -> ChunkSample:
        """Sample a chunk. ``return_sequence=False`` keeps only step 0 (seed 004's option)."""
        mean, log_std = self.distribution(obs)
        out = sample_chunk(mean, log_std, deterministic)
        return out if return_sequence else _first_step(out)

    def teacher_forced(self, obs: torch.Tensor, expert_chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step (mean, log_std) given the expert's previous actions (BC); = distribution(obs)
        for actors whose steps do not condition on each other."""
        del expert_chunk
        return self.distribution(obs)


def _first_step(out: ChunkSample) -> ChunkSample:
    lp = out.log_prob_steps[:, :1]
    return ChunkSample(out.actions[:, :1], lp.sum(-1), lp, out.mean_actions[:, :1])


class MLPActor(ChunkActor):
    def __init__(self, obs_dim: int, action_dim: int, chunk_size: int, cfg: ActorConfig) -> None:
        super().__init__(obs_dim, action_dim, chunk_size, 1, cfg)
        self.net = mlp(obs_dim, cfg.hidden_dims, 2 * chunk_size * action_dim)

    def _params(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs_n[:, -1]).view(-1, self.chunk_size, 2, self.action_dim)
        return out[:, :, 0], out[:, :, 1]


def _decoder(cfg: ActorConfig) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(
        cfg.dim_model, cfg.n_heads, cfg.dim_feedforward, dropout=0.0, activation="gelu", batch_first=True,
        norm_first=True,
    )
    return nn.TransformerDecoder(layer, cfg.n_decoder_layers, norm=nn.LayerNorm(cfg.dim_model))


class ACTActor(ChunkActor):
    """Seed 003's ``use_act_actor``: chunk queries attend to the observation's tokens.

    memory = [W s + p]                                   (memory="state")
    memory = [W s + p, s_1 w_1 + b_1, ..., s_S w_S + b_S] (memory="state_and_features")
    """

    def __init__(self, obs_dim: int, action_dim: int, chunk_size: int, cfg: ActorConfig) -> None:
        super().__init__(obs_dim, action_dim, chunk_size, 1, cfg)
        d = cfg.dim_model
        self.obs_proj = nn.Linear(obs_dim, d)
        self.memory_pos = nn.Parameter(torch.zeros(1, 1, d))
        self.chunk_queries = nn.Parameter(0.02 * torch.randn(1, chunk_size, d))
        self.feature_tokens = cfg.memory == "state_and_features"
        if self.feature_tokens:
            self.feature_weight = nn.Parameter(torch.randn(obs_dim, d) / math.sqrt(d))
            self.feature_bias = nn.Parameter(torch.zeros(obs_dim, d))
        self.decoder = _decoder(cfg)
        self.mean_head = nn.Linear(d, action_dim)
        self.log_std_head = nn.Linear(d, action_dim)

    def _params(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = obs_n[:, -1:]
        memory = self.obs_proj(state) + self.memory_pos  # (B, 1, d)
        if self.feature_tokens:
            features = state.transpose(1, 2) * self.feature_weight + self.feature_bias  # (B, S, d)
            memory = torch.cat([memory, features], dim=1)
        h = self.decoder(self.chunk_queries.expand(obs_n.shape[0], -1, -1), memory)
        return self.mean_head(h), self.log_std_head(h)


class SequenceACTActor(ChunkActor):
    """Seed 004's sequence ACT: observation history -> encoder -> chunk decoder."""

    def __init__(self, obs_dim: int, action_dim: int, chunk_size: int, cfg: ActorConfig) -> None:
        super().__init__(obs_dim, action_dim, chunk_size, cfg.obs_history_length, cfg)
        d = cfg.dim_model
        self.autoregressive = cfg.autoregressive
        self.obs_proj = nn.Linear(obs_dim, d)
        self.register_buffer("history_pos", sinusoidal_table(cfg.obs_history_length, d)[None])
        if cfg.n_encoder_layers > 0:
            enc = nn.TransformerEncoderLayer(
                d, cfg.n_heads, cfg.dim_feedforward, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder: nn.Module = nn.TransformerEncoder(
                enc, cfg.n_encoder_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
            )
        else:
            self.encoder = nn.Identity()
        self.chunk_queries = nn.Parameter(0.02 * torch.randn(1, chunk_size, d))
        self.decoder = _decoder(cfg)
        self.mean_head = nn.Linear(d, action_dim)
        self.log_std_head = nn.Linear(d, action_dim)
        if self.autoregressive:
            self.start_token = nn.Parameter(torch.zeros(1, 1, d))
            self.action_embed = nn.Linear(action_dim, d)
            self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(chunk_size))

    def _memory(self, obs_n: torch.Tensor) -> torch.Tensor:
        if obs_n.shape[1] != self.history:
            raise ValueError(f"sequence_act expects {self.history} history steps, got {obs_n.shape[1]}")
        return self.encoder(self.obs_proj(obs_n) + self.history_pos)

    def _decode(self, tgt: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = tgt.shape[1]
        mask = self.causal_mask[:n, :n] if self.autoregressive else None
        h = self.decoder(tgt, memory, tgt_mask=mask)
        return self.mean_head(h), self.log_std_head(h)

    def _teacher_tgt(self, actions: torch.Tensor) -> torch.Tensor:
        prev = self.action_embed(actions[:, :-1])
        tgt = torch.cat([self.start_token.expand(actions.shape[0], -1, -1), prev], dim=1)
        return tgt + self.chunk_queries

    def _params(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.autoregressive:
            raise RuntimeError("autoregressive sequence_act has no parallel distribution; use forward()")
        memory = self._memory(obs_n)
        return self._decode(self.chunk_queries.expand(obs_n.shape[0], -1, -1), memory)

    def forward(self, obs: torch.Tensor, deterministic: bool = False, return_sequence: bool = True) -> ChunkSample:
        if not self.autoregressive:
            return super().forward(obs, deterministic, return_sequence)
        memory = self._memory(self.normalize(obs))
        b = obs.shape[0]
        steps = self.chunk_size if return_sequence else 1
        tgt = self.start_token.expand(b, -1, -1) + self.chunk_queries[:, :1]
        acts, lps, means = [], [], []
        for i in range(steps):  # O(H) decoder passes: step i conditions on sampled a_<i
            mean, raw = self._decode(tgt, memory)
            mean, log_std = mean[:, -1], self._squash_log_std(raw[:, -1])
            u = mean if deterministic else mean + torch.exp(log_std) * torch.randn_like(mean)
            lps.append(tanh_gaussian_log_prob(u, mean, log_std).sum(-1))
            acts.append(torch.tanh(u))
            means.append(torch.tanh(mean))
            if i + 1 < steps:
                nxt = self.action_embed(acts[-1])[:, None] + self.chunk_queries[:, i + 1 : i + 2]
                tgt = torch.cat([tgt, nxt], dim=1)
        lp_steps = torch.stack(lps, 1)
        return ChunkSample(torch.stack(acts, 1), lp_steps.sum(-1), lp_steps, torch.stack(means, 1))

    def teacher_forced(self, obs: torch.Tensor, expert_chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.autoregressive:
            return super().teacher_forced(obs, expert_chunk)
        memory = self._memory(self.normalize(obs))
        mean, raw = self._decode(self._teacher_tgt(expert_chunk), memory)
        return mean, self._squash_log_std(raw)


def make_actor(kind: str, obs_dim: int, action_dim: int, chunk_size: int, cfg: ActorConfig) -> ChunkActor:
    classes = {"mlp": MLPActor, "act": ACTActor, "sequence_act": SequenceACTActor}
    if kind not in classes:
        raise ValueError(f"actor={kind!r} is not valid; choose one of {sorted(classes)}")
    return classes[kind](obs_dim, action_dim, chunk_size, cfg)


class CriticEnsemble(_Normalizer):
    """N independent Q(s, a) MLPs (LayerNorm after each hidden layer); output (N, B).

    ``a`` is the flattened chunk (H*A) for ``critic=chunk`` or the first action (A) for
    ``critic=first_action``.
    """

    def __init__(self, obs_dim: int, action_in_dim: int, cfg: CriticConfig) -> None:
        super().__init__(obs_dim)
        self.action_in_dim = action_in_dim
        self.qs = nn.ModuleList(
            mlp(obs_dim + action_in_dim, cfg.hidden_dims, 1, layer_norm=cfg.layer_norm) for _ in range(cfg.n_critics)
        )

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.normalize(state), actions.reshape(actions.shape[0], -1)], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs], dim=0)
