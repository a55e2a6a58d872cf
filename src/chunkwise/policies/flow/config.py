"""FlowConfig: the flow-matching chunk policy, its RTC variants and the delta expert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from chunkwise.policies.common.config import PolicyConfig
from chunkwise.policies.rtc import RTCConfig

if TYPE_CHECKING:
    from chunkwise.policies.common.trainable import DatasetInfo
    from chunkwise.policies.flow.policy import FlowPolicy

TimeSchedule = Literal["beta", "uniform"]
PrefixMode = Literal["none", "rtc_guided", "rtc_trained", "delta_expert"]
ContextFill = Literal["tile", "hold_last"]
ContextNoise = Literal["none", "chunk_error"]
DeltaFallback = Literal["zeros", "base_flow"]


def _check_choice(name: str, value: str, literal: object) -> None:
    valid = get_args(literal)
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


@PolicyConfig.register_subclass("flow")
@dataclass
class FlowConfig(PolicyConfig):
    """``--policy.type=flow``. Sizes default to a ~1M-parameter model that trains on CPU.

    Time convention everywhere: t = 0 is noise, t = 1 is data (as in pi0).
    ``chunk_size`` (H), ``n_action_steps`` and the optimiser settings come from PolicyConfig.
    """

    # --- network ---
    dim_model: int = 128
    n_heads: int = 4
    n_blocks: int = 3
    mlp_ratio: float = 2.0
    n_future_tokens: int = 4  # learnable tokens between the state token and the action tokens
    n_task_buckets: int = 64  # task strings hash (crc32) into this many embeddings
    use_images: bool = False  # every observation.images.* camera of the dataset -> CNN tokens
    num_timestep_buckets: int = 1000  # GR00T discretizes t into 1000 buckets
    # --- flow matching ---
    time_schedule: TimeSchedule = "beta"  # beta: noise level 1 - t ~ Beta(1.5, 1) (pi0); uniform
    time_beta_alpha: float = 1.5
    time_beta_beta: float = 1.0
    time_min: float = 0.001
    time_max: float = 0.999
    num_inference_steps: int = 10
    # --- RTC, training time: sample d per example, prefix clean (t = 1), no loss on it ---
    rtc_training: bool = False
    rtc_max_delay: int = 8  # d ~ U{0, ..., rtc_max_delay}
    # fraction of each batch that gets a delay at all (the rest trains with d = 0). 1.0 is the
    # original "every example" scheme; it starves the first chunk indices of loss (index 0
    # is supervised in only 1/(rtc_max_delay+1) of the examples), which hurts plain sampling.
    rtc_training_prob: float = 0.5
    # --- which prefix-aware inference predict_chunk uses (can be changed after loading) ---
    prefix_mode: PrefixMode = "none"
    rtc: RTCConfig = field(default_factory=RTCConfig)
    # --- delta expert (action context) ---
    delta_expert: bool = False
    action_context_length: int = 5  # N queued actions sent as context
    delta_timestep: float = 0.5  # the encoded context is treated as x_t at this t
    delta_num_steps: int = 1  # Euler steps from delta_timestep to 1 (seed: one call)
    delta_n_blocks: int = 2
    context_fill: ContextFill = "tile"  # seed's "repeat-fill"; hold_last is the improved variant
    context_noise: ContextNoise = "none"  # chunk_error: train on context perturbed like a stale plan
    context_noise_std: float = 0.1  # in normalized action units
    delta_zero_context_prob: float = 0.1  # train the zeros fallback too
    delta_fallback: DeltaFallback = "zeros"  # fewer than N queued: seed's zeros, or the base flow head
    delta_loss_weight: float = 1.0
    seed: int = 0  # sampling noise generator (reset() re-seeds it)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rtc, dict):  # from JSON
            self.rtc = RTCConfig(**self.rtc)
        _check_choice("time_schedule", self.time_schedule, TimeSchedule)
        _check_choice("prefix_mode", self.prefix_mode, PrefixMode)
        _check_choice("context_fill", self.context_fill, ContextFill)
        _check_choice("context_noise", self.context_noise, ContextNoise)
        _check_choice("delta_fallback", self.delta_fallback, DeltaFallback)
        for name in ("chunk_size", "dim_model", "n_heads", "n_blocks", "num_inference_steps",
                     "num_timestep_buckets", "n_task_buckets", "delta_num_steps", "delta_n_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_future_tokens < 0:
            raise ValueError(f"n_future_tokens must be >= 0, got {self.n_future_tokens}")
        if self.dim_model % self.n_heads:
            raise ValueError(f"dim_model={self.dim_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.time_min < self.time_max <= 1.0:
            raise ValueError(f"need 0 <= time_min < time_max <= 1, got {self.time_min}, {self.time_max}")
        if self.time_beta_alpha <= 0 or self.time_beta_beta <= 0:
            raise ValueError("time_beta_alpha and time_beta_beta must be positive")
        if self.rtc_max_delay < 0 or self.rtc_max_delay >= self.chunk_size:
            raise ValueError(f"rtc_max_delay must be in [0, chunk_size), got {self.rtc_max_delay}")
        if not 0.0 <= self.rtc_training_prob <= 1.0:
            raise ValueError(f"rtc_training_prob must be in [0, 1], got {self.rtc_training_prob}")
        if self.action_context_length < 1:
            raise ValueError(f"action_context_length must be >= 1, got {self.action_context_length}")
        if not 0.0 <= self.delta_timestep < 1.0:
            raise ValueError(f"delta_timestep must be in [0, 1), got {self.delta_timestep}")
        if not 0.0 <= self.delta_zero_context_prob <= 1.0:
            raise ValueError(f"delta_zero_context_prob must be in [0, 1], got {self.delta_zero_context_prob}")
        if self.context_noise_std < 0:
            raise ValueError(f"context_noise_std must be >= 0, got {self.context_noise_std}")
        if self.prefix_mode == "delta_expert" and not self.delta_expert:
            raise ValueError("prefix_mode='delta_expert' needs delta_expert=True (a trained delta expert)")
        if self.prefix_mode == "rtc_trained" and not self.rtc_training:
            raise ValueError("prefix_mode='rtc_trained' needs rtc_training=True (prefix-conditioned training)")

    def make_policy(self, info: "DatasetInfo") -> "FlowPolicy":
        from chunkwise.policies.flow.policy import FlowPolicy

        return FlowPolicy(self, info)

    @property
    def uses_prefix(self) -> bool:
        return self.prefix_mode != "none"
