"""Delta expert: context encoding, zeros fallback, timestep alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chunkwise.policies.flow.delta_expert import resample_to_chunk
from chunkwise.types import Prefix

from flow_helpers import A, S, tiny_policy, toy_batch

H = 8


@pytest.mark.parametrize("n", [3, 5, 8, 13])
def test_encode_action_context_shapes(n):
    delta = tiny_policy(delta_expert=True).model.delta
    out = delta.encode_action_context(torch.randn(2, n, A))
    assert out.shape == (2, H, A)


def test_resample_fill_and_interpolation_values():
    x = torch.arange(3, dtype=torch.float32).view(1, 3, 1)  # 0 1 2
    assert resample_to_chunk(x, 8, "tile").flatten().tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert resample_to_chunk(x, 8, "hold_last").flatten().tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    same = torch.randn(1, 8, 2)
    assert resample_to_chunk(same, 8) is same  # N == H: unchanged
    long = torch.linspace(0, 1, 15).view(1, 15, 1)  # N > H: linear interpolation, ends kept
    assert torch.allclose(resample_to_chunk(long, 8).flatten(), torch.linspace(0, 1, 8), atol=1e-6)


def _obs(n: int = 1) -> dict:
    rng = np.random.default_rng(0)
    return {"observation.state": rng.standard_normal((n, S)).astype(np.float32), "task": ["toy"] * n}


def test_zeros_fallback_when_fewer_than_n_actions_are_queued():
    policy = tiny_policy(delta_expert=True, prefix_mode="delta_expert")
    obs = policy.encode(_obs(2), numpy=True)
    with torch.no_grad():
        from_zeros = policy.normalizer.unnormalize("action", policy.model.delta.generate_delta_actions(obs, None, action_dim=A))
    short = Prefix(np.ones((4, A), np.float32), 1)  # 4 < N = 5 queued
    out = policy.predict_chunk(_obs(2), [short, None])
    np.testing.assert_allclose(out, from_zeros.numpy(), atol=1e-6)
    full = policy.predict_chunk(_obs(2), [Prefix(np.ones((5, A), np.float32), 1), None])
    assert not np.allclose(full[0], out[0]) and np.allclose(full[1], out[1], atol=1e-6)


def test_context_is_aligned_to_the_observation_timestep(monkeypatch):
    """Context index i and chunk index i are both control step obs_t + i: at inference the
    context is prefix.actions[:N] (not shifted by the delay); in training it is action[:, :N]."""
    policy = tiny_policy(delta_expert=True, prefix_mode="delta_expert")
    delta = policy.model.delta
    seen = []
    orig = delta.encode_action_context
    monkeypatch.setattr(delta, "encode_action_context", lambda ctx: (seen.append(ctx.clone()), orig(ctx))[1])
    queued = np.arange(7 * A, dtype=np.float32).reshape(7, A)  # steps t .. t+6
    policy.predict_chunk(_obs(), [Prefix(queued, delay=3)])
    expected = policy.normalizer.normalize("action", torch.as_tensor(queued[:5]))
    torch.testing.assert_close(seen[-1][0], expected)
    batch = toy_batch(4)
    policy.config.delta_zero_context_prob = 0.0
    policy.compute_loss(batch)
    torch.testing.assert_close(seen[-1], policy.normalizer.normalize("action", batch["action"][:, :5]))


def _lines(n: int, seed: int) -> dict:
    """a_i = c + s·i with random (c, s) and an uninformative state: only the context tells."""
    g = torch.Generator().manual_seed(seed)
    c, s = torch.randn(n, 1, A, generator=g), 0.5 * torch.randn(n, 1, A, generator=g)
    action = c + s * torch.arange(H, dtype=torch.float32).view(1, H, 1)
    return {"observation.state": torch.zeros(n, S), "action": action, "task": ["toy"] * n}


def test_trained_delta_expert_continues_the_queued_actions():
    """Semantic alignment check: after training, chunk[:N] reproduces the context it was given
    (index for index) far better than a context shifted by one step would."""
    torch.manual_seed(0)
    policy = tiny_policy(delta_expert=True, prefix_mode="delta_expert", delta_zero_context_prob=0.0)
    batch = _lines(64, seed=0)
    opt = torch.optim.Adam(policy.model.delta.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = policy.model.delta.forward_delta_expert(policy.encode(batch), policy.normalizer.normalize(
            "action", batch["action"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _lines(16, seed=1)
    ctx = test["action"][:, :5].numpy()
    obs = {"observation.state": np.zeros((16, S), np.float32), "task": ["toy"] * 16}
    out = policy.predict_chunk(obs, [Prefix(c, 2) for c in ctx])
    err_aligned = np.abs(out[:, :5] - ctx).mean()
    err_shifted = np.abs(out[:, 1:6] - ctx).mean()
    err_future = np.abs(out - test["action"].numpy()).mean()
    assert err_aligned < 0.5 * err_shifted, (err_aligned, err_shifted)
    assert err_future < 0.5 * np.abs(test["action"].numpy() - test["action"].numpy().mean()).mean()


def test_chunk_error_context_noise_is_offset_plus_drift():
    policy = tiny_policy(delta_expert=True, context_noise="chunk_error", context_noise_std=0.3)
    ctx = torch.zeros(256, 5, A)
    noisy = policy.model.delta.perturb_context(ctx, torch.Generator().manual_seed(0))
    step = noisy[:, 1:] - noisy[:, :-1]  # constant per example: offset + linear drift
    assert torch.allclose(step, step[:, :1].expand_as(step), atol=1e-6)
    assert 0.2 < float(noisy[:, 0].std()) < 0.45
    plain = tiny_policy(delta_expert=True).model.delta
    assert plain.perturb_context(ctx) is ctx


def test_base_flow_fallback_samples_the_base_head_without_context():
    policy = tiny_policy(delta_expert=True, delta_fallback="base_flow")
    short = [Prefix(np.ones((2, A), np.float32), 1)]
    policy.reset()
    fallback = policy.predict_chunk(_obs(), short, prefix_mode="delta_expert")
    policy.reset()
    plain = policy.predict_chunk(_obs(), None, prefix_mode="none")
    np.testing.assert_allclose(fallback, plain, atol=1e-6)
