"""Losses of SAC over action chunks (pure functions of tensors; no modules are stepped here).

Chunk critic (Q-chunking), for a window of k = valid <= H executed steps::

    y = sum_{i<k} gamma^i r_{t+i} + gamma^k * mask * [ Q_tgt(s_{t+k}, A') - alpha * log pi(A' | s_{t+k}) ]
    A' ~ pi(. | s_{t+k}),  Q_tgt = min over the target ensemble

(``mask`` = 0 when the episode terminated inside the window; the entropy bonus in the
target is SAC's soft value and can be switched off with ``soft_target=False``.)

First-action critic (seed 004 baseline): the same with k = 1 and A' replaced by its first
action: y = r_t + gamma * mask_1 * [Q_tgt(s_{t+1}, a'_0) - alpha * log pi(A' | s_{t+1})].

Actor:  L_pi = E[ alpha * log pi(A|s) - agg_j Q_j(s, A) / c ] + w_bc(step) * L_bc
        c = mean_batch |agg_j Q_j| (detached) if normalize_q else 1
        L_bc = mean over demo rows and valid steps of ||tanh(mean_pi(s))_i - a*_i||^2   (bc_loss=mse, seed 003)
          or   -log pi(a*_i | s) / A  with a* clipped to +-0.99                    (bc_loss=nll, Q-chunking)
Temperature: L_alpha = -log_alpha * E[ log pi(A|s) + target_entropy ]   (alpha = exp(log_alpha))
"""

from __future__ import annotations

import torch

from chunkwise.rl.distributions import tanh_gaussian_log_prob


def chunk_td_target(
    rewards: torch.Tensor,
    valid: torch.Tensor,
    mask: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """H-step target from (B, H) rewards (zero beyond ``valid``), (B,) valid, mask, next value."""
    h = rewards.shape[1]
    steps = torch.arange(h, device=rewards.device)
    inside = (steps[None, :] < valid[:, None]).to(rewards.dtype)
    disc = gamma ** steps.to(rewards.dtype)
    ret = (rewards * inside * disc).sum(1)
    return ret + (gamma ** valid.to(rewards.dtype)) * mask * next_value


def critic_loss(q_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the ensemble of the mean squared TD error: q_pred (N, B), target (B,)."""
    return ((q_pred - target.detach()[None]) ** 2).mean(1).sum()


def aggregate_q(q: torch.Tensor, how: str) -> torch.Tensor:
    if how == "min":
        return q.min(0).values
    if how == "mean":
        return q.mean(0)
    raise ValueError(f"q_aggregation={how!r} is not valid; choose one of ['min', 'mean']")


def bc_chunk_loss(pred: torch.Tensor, expert: torch.Tensor, step_mask: torch.Tensor, row_weight: torch.Tensor) -> torch.Tensor:
    """Masked MSE between predicted and expert chunks (B, H, A); rows weighted by ``row_weight`` (B,)."""
    w = step_mask * row_weight[:, None]  # (B, H)
    denom = w.sum().clamp_min(1.0) * pred.shape[-1]
    return (((pred - expert) ** 2).sum(-1) * w).sum() / denom


def bc_chunk_nll(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    expert: torch.Tensor,
    step_mask: torch.Tensor,
    row_weight: torch.Tensor,
    clip: float = 0.99,
) -> torch.Tensor:
    """Masked mean over steps and dims of -log pi(a*|s) under the tanh-Gaussian.

    Expert actions at +-1 (clipped scripted experts) have no finite pre-image, so
    a* is clipped to +-``clip`` first. Unlike the MSE on tanh(mean), the gradient does not
    vanish when the mean saturates: d/d mean = -(atanh(a*) - mean) / sigma^2.
    """
    a = expert.clamp(-clip, clip)
    lp = tanh_gaussian_log_prob(torch.atanh(a), mean, log_std).sum(-1)  # (B, H)
    w = step_mask * row_weight[:, None]
    return -(lp * w).sum() / (w.sum().clamp_min(1.0) * mean.shape[-1])


def actor_loss(
    log_prob: torch.Tensor,
    q: torch.Tensor,
    temperature: torch.Tensor,
    q_aggregation: str,
    normalize_q: bool = False,
) -> torch.Tensor:
    """SAC actor loss alpha * log pi(A|s) - agg Q(s, A) / scale; log_prob is the joint chunk log-prob.

    scale = mean |agg Q| over the batch (detached) with ``normalize_q``, else 1.
    """
    q_agg = aggregate_q(q, q_aggregation)
    if normalize_q:
        q_agg = q_agg / q_agg.abs().mean().detach().clamp_min(1e-6)
    return (temperature.detach() * log_prob - q_agg).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
