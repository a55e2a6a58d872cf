"""RTC prefix weights, guidance weight, guided Euler sampling (model-agnostic)."""

from __future__ import annotations

import math

import pytest
import torch

from chunkwise.policies import rtc


def test_prefix_weights_schedules():
    H, d = 10, 3
    ones = rtc.prefix_weights(d, H, "ones", execution_horizon=2)
    assert ones.tolist() == [1.0] * 8 + [0.0] * 2
    assert rtc.prefix_weights(d, H, "zeros").sum() == 0
    lin = rtc.prefix_weights(d, H, "linear", execution_horizon=2)
    assert lin[:d].tolist() == [1.0] * d and lin[8:].tolist() == [0.0, 0.0]
    # c_i = (H - s - i) / (H - s - d + 1) for d <= i < H - s
    assert lin[3].item() == pytest.approx(5 / 6) and lin[7].item() == pytest.approx(1 / 6)
    assert torch.all(lin[d:8][1:] < lin[d:8][:-1])  # strictly decaying ramp
    ex = rtc.prefix_weights(d, H, "exp", execution_horizon=2)
    c = 5 / 6
    assert ex[3].item() == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1))
    assert torch.all(ex[d:8] <= lin[d:8]) and ex[:d].tolist() == [1.0] * d


def test_prefix_weights_capped_by_queue_length_and_validated():
    w = rtc.prefix_weights(2, 10, "ones", prefix_len=4)
    assert w.tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    # delay longer than the queue: only what is queued can be frozen
    assert rtc.prefix_weights(6, 10, "linear", prefix_len=4).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="valid"):
        rtc.prefix_weights(1, 10, "cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule"):
        rtc.RTCConfig(schedule="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        rtc.RTCConfig(max_guidance_weight=-1)


def test_guidance_weight_formula_and_clip():
    assert rtc.guidance_weight(0.0, 5.0) == 5.0 and rtc.guidance_weight(1.0, 5.0) == 5.0
    t = 0.5  # (1-t)/t * (t^2 + (1-t)^2)/(1-t)^2 = 1 * 0.5 / 0.25 = 2
    assert rtc.guidance_weight(t, 5.0) == pytest.approx(2.0)
    assert rtc.guidance_weight(t, 1.5) == 1.5


def test_euler_integration_of_known_fields_is_exact():
    torch.manual_seed(0)
    x0 = torch.randn(3, 8, 2, dtype=torch.float64)
    y = torch.randn(3, 8, 2, dtype=torch.float64)
    # the conditional flow toward y: v = (y - x)/(1 - t) is constant (= y - x0) on the path
    out = rtc.euler_sample(lambda x, t: (y - x) / (1 - t), x0, num_steps=7)
    assert torch.allclose(out, y, atol=1e-12, rtol=0)
    c = torch.randn(3, 8, 2, dtype=torch.float64)
    assert torch.allclose(rtc.euler_sample(lambda x, t: c, x0, 10), x0 + c, atol=1e-12, rtol=0)


def _mlp_field(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(3, 16, generator=g) * 0.5, torch.randn(16, 3, generator=g) * 0.5

    def v(x: torch.Tensor, t: float) -> torch.Tensor:
        return torch.tanh(x @ w1 + t) @ w2

    return v


def test_beta_zero_equals_plain_sampling():
    v = _mlp_field()
    noise = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(1))
    Y = torch.randn(2, 10, 3)
    W = rtc.prefix_weights(3, 10, "exp").expand(2, 10)
    plain = rtc.euler_sample(v, noise, 10)
    guided = rtc.rtc_sample(v, noise, 10, Y, W, max_guidance_weight=0.0)
    assert torch.equal(plain, guided)


def test_vjp_correction_matches_explicit_jacobian():
    A = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = lambda x, t: x @ A  # noqa: E731 - linear field: d x̂₁/dx = I + (1-t) A (per row)
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    Y = torch.randn(1, 4, 3, dtype=torch.float64)
    W = torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    t, beta = 0.3, 100.0
    got = rtc.guided_velocity(v, x, t, Y, W, beta)
    x1 = x + (1 - t) * (x @ A)
    e = (Y - x1) * W[None, :, None]
    J = torch.eye(3, dtype=torch.float64) + (1 - t) * A  # x̂₁ = x J  =>  VJP = e Jᵀ
    want = x @ A + rtc.guidance_weight(t, beta) * (e @ J.T)
    assert torch.allclose(got, want, atol=1e-10)


def test_guidance_pulls_toward_prefix_and_hard_prefix_is_exact():
    v = _mlp_field(3)
    H, d = 10, 4
    noise = torch.randn(2, H, 3, generator=torch.Generator().manual_seed(4))
    Y = torch.randn(2, H, 3, generator=torch.Generator().manual_seed(5))
    W = rtc.prefix_weights(d, H, "ones", prefix_len=6).expand(2, H)
    errs = []
    for beta in (0.0, 1.0, 5.0):
        out = rtc.rtc_sample(v, noise, 10, Y, W, beta)
        errs.append(float((out[:, :d] - Y[:, :d]).abs().mean()))
    assert errs[0] > errs[1] > errs[2]  # stronger guidance -> closer to the frozen prefix
    assert errs[2] > 0  # soft guidance alone is not exact (weight is capped at beta)...
    hard = rtc.rtc_sample(v, noise, 10, Y, W, 5.0, delay=d, hard_prefix=True)
    assert torch.equal(hard[:, :d], Y[:, :d])  # ...the hard replacement variant is, bit for bit
    per_elem = rtc.rtc_sample(v, noise, 10, Y, W, 5.0, delay=torch.tensor([2, 4]), hard_prefix=True)
    assert torch.equal(per_elem[0, :2], Y[0, :2]) and not torch.equal(per_elem[0, 2:4], Y[0, 2:4])
    assert torch.equal(per_elem[1, :4], Y[1, :4])
