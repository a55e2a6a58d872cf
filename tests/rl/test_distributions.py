"""Tanh-Gaussian log-prob vs independent numerical checks; joint chunk log-prob = sum over steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chunkwise.rl.config import ActorConfig
from chunkwise.rl.distributions import sample_chunk, tanh_gaussian_log_prob
from chunkwise.rl.networks import make_actor

torch.set_num_threads(1)


def test_tanh_gaussian_density_matches_change_of_variables() -> None:
    """log p(a) for a = tanh(u) vs torch.distributions computed on atanh(a) (float64)."""
    torch.manual_seed(0)
    mean = torch.randn(1000, dtype=torch.float64)
    log_std = torch.empty(1000, dtype=torch.float64).uniform_(-2, 1)
    u = mean + log_std.exp() * torch.randn(1000, dtype=torch.float64)
    a = torch.tanh(u)
    keep = a.abs() < 0.999999  # atanh is ill-conditioned at the boundary
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(torch.atanh(a)) - torch.log1p(-a * a)
    ours = tanh_gaussian_log_prob(u, mean, log_std)
    torch.testing.assert_close(ours[keep], ref[keep], rtol=1e-6, atol=1e-6)
    # stable even where 1 - tanh(u)^2 underflows in float32
    big = tanh_gaussian_log_prob(torch.tensor([30.0]), torch.tensor([30.0]), torch.tensor([0.0]))
    assert torch.isfinite(big).all()
    expected = -0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 30.0 - math.log1p(math.exp(-60.0)))
    assert big.item() == pytest.approx(expected, rel=1e-6)


def test_tanh_gaussian_density_matches_monte_carlo_histogram() -> None:
    """Probability mass of bins from the density (trapezoid) vs the fraction of samples."""
    torch.manual_seed(1)
    mean, log_std = torch.tensor(0.7, dtype=torch.float64), torch.tensor(math.log(0.9), dtype=torch.float64)
    n = 400_000
    a = torch.tanh(mean + log_std.exp() * torch.randn(n, dtype=torch.float64)).numpy()
    edges = np.linspace(-0.99, 0.99, 41)
    counts, _ = np.histogram(a, bins=edges)
    grid = torch.linspace(-0.99, 0.99, 4001, dtype=torch.float64)
    dens = tanh_gaussian_log_prob(torch.atanh(grid), mean, log_std).exp().numpy()
    g = grid.numpy()
    mass = np.array([np.trapezoid(dens[(g >= lo) & (g <= hi)], g[(g >= lo) & (g <= hi)])
                     for lo, hi in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(counts / n, mass, atol=2.5e-3)
    # and the density integrates to ~1 over (-1, 1) minus the clipped tails
    tails = np.mean(np.abs(a) > 0.99)
    assert np.trapezoid(dens, g) + tails == pytest.approx(1.0, abs=2e-3)


def test_joint_log_prob_is_sum_over_steps() -> None:
    torch.manual_seed(2)
    mean, log_std = torch.randn(8, 5, 4), torch.randn(8, 5, 4).clamp(-2, 1)
    out = sample_chunk(mean, log_std)
    assert out.actions.shape == (8, 5, 4) and out.log_prob.shape == (8,) and out.log_prob_steps.shape == (8, 5)
    u = torch.atanh(out.actions.double().clamp(-1 + 1e-12, 1 - 1e-12))
    per_step = [
        (torch.distributions.Normal(mean[:, i].double(), log_std[:, i].exp().double()).log_prob(u[:, i])
         - torch.log1p(-out.actions[:, i].double() ** 2)).sum(-1)
        for i in range(5)
    ]
    torch.testing.assert_close(out.log_prob_steps.double(), torch.stack(per_step, 1), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out.log_prob, out.log_prob_steps.sum(-1))


@pytest.mark.parametrize("kind,memory", [("mlp", "state"), ("act", "state"), ("act", "state_and_features"),
                                         ("sequence_act", "state")])
def test_actor_log_prob_matches_its_distribution(kind: str, memory: str) -> None:
    """actor(obs).log_prob == sum over steps and dims of the tanh-Gaussian of actor.distribution(obs)."""
    torch.manual_seed(3)
    cfg = ActorConfig(dim_model=32, dim_feedforward=64, hidden_dims=(32,), obs_history_length=3, memory=memory)
    actor = make_actor(kind, 6, 2, 4, cfg)
    obs = torch.randn(5, actor.history, 6)
    torch.manual_seed(4)
    out = actor(obs)
    torch.manual_seed(4)
    mean, log_std = actor.distribution(obs)
    u = mean + log_std.exp() * torch.randn_like(mean)
    torch.testing.assert_close(out.actions, torch.tanh(u))
    torch.testing.assert_close(out.log_prob, tanh_gaussian_log_prob(u, mean, log_std).sum((-1, -2)))
    assert out.actions.shape == (5, 4, 2) and bool((out.actions.abs() <= 1).all())
    first = actor(obs, return_sequence=False)
    assert first.actions.shape == (5, 1, 2) and first.log_prob.shape == (5,)


def test_autoregressive_joint_log_prob_is_chain_rule() -> None:
    """Sequential sampling's joint log-prob equals the teacher-forced conditionals at the sample."""
    torch.manual_seed(5)
    cfg = ActorConfig(dim_model=32, dim_feedforward=64, obs_history_length=2, autoregressive=True)
    actor = make_actor("sequence_act", 6, 2, 4, cfg)
    obs = torch.randn(3, 2, 6)
    out = actor(obs)
    memory = actor._memory(actor.normalize(obs))
    mean, raw = actor._decode(actor._teacher_tgt(out.actions), memory)  # step i sees a_<i only
    log_std = actor._squash_log_std(raw)
    u = torch.atanh(out.actions.double().clamp(-1 + 1e-9, 1 - 1e-9)).float()
    lp = tanh_gaussian_log_prob(u, mean, log_std).sum(-1)
    torch.testing.assert_close(lp, out.log_prob_steps, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out.log_prob, out.log_prob_steps.sum(-1))
    # the causal mask really makes step 0 independent of later actions
    changed = out.actions.clone()
    changed[:, 1:] = -changed[:, 1:]
    mean2, _ = actor._decode(actor._teacher_tgt(changed), memory)
    torch.testing.assert_close(mean2[:, :2], actor._decode(actor._teacher_tgt(out.actions), memory)[0][:, :2])
