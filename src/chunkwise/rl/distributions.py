"""Tanh-squashed diagonal Gaussian over an action chunk.

For pre-squash sample u ~ N(mu, sigma^2) and action a = tanh(u) (change of variables):

    log pi(a) = sum_dims [ log N(u; mu, sigma) - log(1 - tanh(u)^2) ]
    log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))        (numerically stable form)

A chunk has H steps of A dims each. The steps are independent given the observation
(or, for the autoregressive actor, given the previous steps), so the joint log-prob of
the chunk is the sum of the per-step log-probs (chain rule):

    log pi(a_t..a_{t+H-1} | s) = sum_{i<H} log pi_i(a_{t+i} | s, [a_<i])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(u; mean, exp(log_std)^2)."""
    z = (u - mean) * torch.exp(-log_std)
    return -0.5 * z * z - log_std - 0.5 * _LOG_2PI


def log_one_minus_tanh_sq(u: torch.Tensor) -> torch.Tensor:
    """Elementwise log(1 - tanh(u)^2) without cancellation for large |u|."""
    return 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise log-density of a = tanh(u) (sum over the last dim for a per-step value)."""
    return gaussian_log_prob(u, mean, log_std) - log_one_minus_tanh_sq(u)


@dataclass
class ChunkSample:
    """What an actor returns for a batch of observations.

    actions:        (B, H, A) squashed sample in (-1, 1) (or tanh(mean) when deterministic)
    log_prob:       (B,)      joint log-prob of the chunk = log_prob_steps.sum(-1)
    log_prob_steps: (B, H)    per-step log-prob (sum over the A action dims)
    mean_actions:   (B, H, A) tanh(mean): the deterministic chunk used for evaluation
    dist:           pre-squash (mean, log_std), each (B, H, A), when computed in one pass
    """

    actions: torch.Tensor
    log_prob: torch.Tensor
    log_prob_steps: torch.Tensor
    mean_actions: torch.Tensor
    dist: tuple[torch.Tensor, torch.Tensor] | None = None


def sample_chunk(mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False) -> ChunkSample:
    """Reparameterised sample of the whole chunk from per-step (B, H, A) parameters."""
    if deterministic:
        u = mean
    else:
        u = mean + torch.exp(log_std) * torch.randn_like(mean)
    lp_steps = tanh_gaussian_log_prob(u, mean, log_std).sum(-1)
    return ChunkSample(torch.tanh(u), lp_steps.sum(-1), lp_steps, torch.tanh(mean), (mean, log_std))
