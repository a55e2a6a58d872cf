"""Real-time chunking (RTC, Black, Galliker & Levine 2025): guided inpainting of a frozen prefix.

Model-agnostic: everything here takes a *velocity function* ``v = f(x_t, t)`` of a
flow-matching policy with the convention (time 0 = noise, 1 = data)::

    x_t = (1 - t) * noise + t * actions,      target velocity  v = actions - noise

While chunk k+1 is computed, the robot keeps executing chunk k. The first ``d`` actions
of the new chunk (the *delay*) are already decided; the next ones were planned by the old
chunk and may be revised; the tail is new. Soft prefix weights ``W`` over chunk index i::

    chunk index i:  0         d                      H-s        H
                    |---------|----------------------|----------|
    W (ones):       1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0
    W (linear):     1 1 1 1 1 .9 .8 .7 .6 .5 .4 .3 .1 0 0 0 0 0 0
    W (exp):        1 1 1 1 1 .8 .6 .4 .3 .2 .1 .05 ~0 0 0 0 0 0 0
    W (zeros):      0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
                    [frozen d][ old plan, revisable ][ new tail ]

    ramp value  c_i = (H - s - i) / (H - s - d + 1)   for d <= i < H - s
    linear:     W_i = c_i
    exp:        W_i = c_i * (e^{c_i} - 1) / (e - 1)

``s`` is the execution horizon (actions executed per chunk before the next one starts);
the old plan only covers indices < H - s. In the async runtime the old plan is exactly the
queued prefix of length N, so by default the ramp ends at ``min(N, H - s)`` (LeRobot
calls the ramp end ``execution_horizon`` directly; its constraint d <= s <= H - d is the
same thing with s' = H - s).

Guidance at each Euler step (x̂₁ = denoised estimate, Y = prefix target)::

    x̂₁ = x_t + (1 - t) * v(x_t, t)
    e  = (Y - x̂₁) * W
    g  = eᵀ · ∂x̂₁/∂x_t                       (one vector–Jacobian product)
    w  = min( (1-t)/t · (t² + (1-t)²)/(1-t)², β )
    v ← v + w · g ;   x_{t+Δ} = x_t + Δ · v

β = 0 gives back plain sampling exactly. Guidance alone never reproduces Y exactly (the
weight is capped at β); ``hard_prefix=True`` additionally *replaces* the frozen indices
(i < d) by their point on the straight path, x_t[:d] = (1-t)·z[:d] + t·Y[:d], after every
step, so at t = 1 the frozen prefix equals Y bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch

PrefixSchedule = Literal["zeros", "ones", "linear", "exp"]
PREFIX_SCHEDULES: tuple[str, ...] = get_args(PrefixSchedule)

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class RTCConfig:
    """Inference-time RTC settings (reference defaults: β = 5, exp schedule)."""

    schedule: PrefixSchedule = "exp"
    max_guidance_weight: float = 5.0  # β; LeRobot uses 10 for 10-step policies
    execution_horizon: int | None = None  # s; None = the ramp ends where the queued prefix ends
    hard_prefix: bool = False  # also replace indices < d on the noise->Y path (exact prefix)

    def __post_init__(self) -> None:
        if self.schedule not in PREFIX_SCHEDULES:
            raise ValueError(f"rtc schedule {self.schedule!r} unknown; valid: {list(PREFIX_SCHEDULES)}")
        if self.max_guidance_weight < 0:
            raise ValueError(f"max_guidance_weight (beta) must be >= 0, got {self.max_guidance_weight}")
        if self.execution_horizon is not None and self.execution_horizon < 0:
            raise ValueError(f"execution_horizon must be >= 0 or None, got {self.execution_horizon}")


def prefix_weights(
    delay: int,
    chunk_size: int,
    schedule: PrefixSchedule = "exp",
    execution_horizon: int | None = None,
    prefix_len: int | None = None,
) -> torch.Tensor:
    """Soft mask W (chunk_size,) float32 over chunk indices (see the module diagram).

    ``prefix_len`` (the number of queued actions available) caps the region: there is no
    old plan to match beyond it. ``delay`` is clamped into [0, end].
    """
    if schedule not in PREFIX_SCHEDULES:
        raise ValueError(f"prefix schedule {schedule!r} unknown; valid: {list(PREFIX_SCHEDULES)}")
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    H = int(chunk_size)
    end = H if execution_horizon is None else H - int(execution_horizon)
    if prefix_len is not None:
        end = min(end, int(prefix_len))
    end = max(0, min(end, H))
    d = min(int(delay), end)
    w = torch.zeros(H, dtype=torch.float32)
    if schedule == "zeros":
        return w
    w[:d] = 1.0
    if schedule == "ones":
        w[d:end] = 1.0
        return w
    i = torch.arange(d, end, dtype=torch.float32)
    c = (end - i) / (end - d + 1)
    if schedule == "linear":
        w[d:end] = c
    else:  # exp
        w[d:end] = c * torch.expm1(c) / (math.e - 1.0)
    return w


def guidance_weight(t: float, max_guidance_weight: float) -> float:
    """min((1-t)/t · (t² + (1-t)²)/(1-t)², β); the formula diverges at both ends -> β."""
    beta = float(max_guidance_weight)
    if t <= 0.0 or t >= 1.0:
        return beta
    w = (1.0 - t) / t * (t * t + (1.0 - t) ** 2) / (1.0 - t) ** 2
    return min(w, beta)


def guided_velocity(
    velocity_fn: VelocityFn,
    x_t: torch.Tensor,
    t: float,
    target: torch.Tensor,
    weights: torch.Tensor,
    max_guidance_weight: float,
) -> torch.Tensor:
    """The guided velocity v + w·VJP at (x_t, t). Shapes: x_t, target (B, H, A); weights (B, H) or (H,)."""
    beta = float(max_guidance_weight)
    if beta == 0.0:
        with torch.no_grad():
            return velocity_fn(x_t, t)
    if weights.dim() == 1:
        weights = weights.unsqueeze(0)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        v = velocity_fn(x, t)
        x1_hat = x + (1.0 - t) * v
        err = (target - x1_hat) * weights.unsqueeze(-1).to(x1_hat)
        (correction,) = torch.autograd.grad(x1_hat, x, grad_outputs=err.detach())
    return v.detach() + guidance_weight(t, beta) * correction


def euler_sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    num_steps: int,
    t_start: float = 0.0,
) -> torch.Tensor:
    """Plain Euler integration x ← x + Δ·v(x, t) from t_start to 1 in ``num_steps`` steps.

    Time grid t_k = t_start + k·Δ, Δ = (1 - t_start)/num_steps: for a velocity field that
    is constant along straight paths (v = x₁ - x₀) the result is exact.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dt = (1.0 - t_start) / num_steps
    x = noise
    with torch.no_grad():
        for k in range(num_steps):
            t = t_start + k * dt
            x = x + dt * velocity_fn(x, t)
    return x


def rtc_sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    num_steps: int,
    target: torch.Tensor,
    weights: torch.Tensor,
    max_guidance_weight: float,
    delay: torch.Tensor | int = 0,
    hard_prefix: bool = False,
) -> torch.Tensor:
    """Euler sampling with RTC guidance toward ``target`` (B, H, A) under soft mask ``weights``.

    ``target`` beyond the queued prefix is ignored (its weight is 0), so any fill value
    works there. With ``hard_prefix`` the indices i < delay (per batch element) are put on
    the straight path noise -> target after every step and equal ``target`` at t = 1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    B, H, _ = noise.shape
    dt = 1.0 / num_steps
    if hard_prefix:
        d = torch.as_tensor(delay, dtype=torch.long).reshape(-1)
        d = d.expand(B) if d.numel() == 1 else d
        frozen = (torch.arange(H).unsqueeze(0) < d.unsqueeze(1)).unsqueeze(-1)  # (B, H, 1)
    x = noise
    for k in range(num_steps):
        t = k * dt
        if hard_prefix:
            x = torch.where(frozen, (1.0 - t) * noise + t * target, x)
        v = guided_velocity(velocity_fn, x, t, target, weights, max_guidance_weight)
        x = (x + dt * v).detach()
    if hard_prefix:
        # t = 1 on the path is exactly the target: (1-1)*z + 1*Y == Y in floating point.
        x = torch.where(frozen, target, x)
    return x
