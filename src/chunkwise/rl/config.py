"""Configuration of SAC over action chunks (``chunkwise rl``).

Every string choice is a ``Literal`` and is validated in ``__post_init__`` with an error
that names the field and lists the valid choices, so a typo on the command line fails
before any environment is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

ActorType = Literal["mlp", "act", "sequence_act"]
CriticType = Literal["chunk", "first_action"]
QAggregation = Literal["min", "mean"]
RewardType = Literal["sparse", "dense"]
BCDecay = Literal["exponential", "linear", "constant"]
BCLoss = Literal["mse", "nll"]
ActorMemory = Literal["state", "state_and_features"]
# how online rollouts execute chunks (rl/delayed.py): the executor's strategy names
# IBRL (Hu et al. 2024): a frozen copy of the BC-initialised actor proposes a chunk beside the RL actor
ReferencePolicy = Literal["none", "bc"]
RolloutStrategy = Literal["sync", "latest_only", "weighted_average", "average", "conservative", "temporal_ensemble"]


def executed_offset(rollout_strategy: str, rollout_delay: int) -> int:
    """``SACConfig.executed_offset`` from the two fields (also for a saved config dict)."""
    return 0 if rollout_strategy == "sync" else rollout_delay


def _check_choice(name: str, value: Any, literal: Any) -> None:
    choices = get_args(literal)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass
class ActorConfig:
    """Network sizes of the three actor families (only the relevant fields are used)."""

    # mlp actor
    hidden_dims: tuple[int, ...] = (256, 256)
    # act / sequence_act actor (ACT-style transformer decoder, seeds 003/004)
    # defaults match the BC ACT policy's, so a BC checkpoint's decoder can be mapped
    dim_model: int = 128
    n_heads: int = 4
    n_decoder_layers: int = 1
    n_encoder_layers: int = 1  # sequence_act only: encodes the observation history
    dim_feedforward: int = 512
    # act actor's decoder memory. "state": one token, the projected state (seed 003 as
    # written); with a single key, cross-attention gives every chunk query the same vector.
    # "state_and_features": that token plus one token per state feature (x_j * w_j + b_j,
    # FT-Transformer's numerical embedding), so each chunk step can attend to what it needs.
    memory: ActorMemory = "state"
    obs_history_length: int = 4  # sequence_act only (seed 004 obs_history_length)
    autoregressive: bool = False  # sequence_act only: decode step i from sampled a_<i
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        _check_choice("actor_net.memory", self.memory, ActorMemory)
        for name in ("dim_model", "n_heads", "n_decoder_layers", "dim_feedforward", "obs_history_length"):
            _check_positive(f"actor_net.{name}", getattr(self, name))
        _check_positive("actor_net.n_encoder_layers", self.n_encoder_layers, allow_zero=True)
        if self.dim_model % self.n_heads:
            raise ValueError(f"actor_net.dim_model={self.dim_model} must be divisible by actor_net.n_heads={self.n_heads}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"actor_net.log_std_min={self.log_std_min} must be < actor_net.log_std_max={self.log_std_max}")


@dataclass
class CriticConfig:
    n_critics: int = 2
    hidden_dims: tuple[int, ...] = (256, 256, 256)
    layer_norm: bool = True

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        _check_positive("critic_net.n_critics", self.n_critics)
        if not self.hidden_dims or min(self.hidden_dims) <= 0:
            raise ValueError(f"critic_net.hidden_dims must be non-empty positive ints, got {self.hidden_dims}")


@dataclass
class SACConfig:
    """Learner hyper-parameters (the part of the config ``ChunkSAC`` needs)."""

    actor: ActorType = "act"
    critic: CriticType = "chunk"
    chunk_size: int = 5  # H (Q-chunking uses h=5)
    gamma: float = 0.99
    tau: float = 0.005  # Polyak: target <- (1-tau)*target + tau*online
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    init_temperature: float = 0.1
    auto_temperature: bool = True
    # target entropy = target_entropy_per_dim * (number of action dims the actor samples);
    # -0.5 per dim is the Q-chunking convention for the H*A-dim chunk distribution.
    target_entropy_per_dim: float = -0.5
    q_aggregation: QAggregation = "min"  # actor loss uses min or mean over the ensemble
    # divide the actor's Q term by mean|Q| (detached; TD3+BC, Fujimoto & Gu 2021) so that
    # bc_weight and the temperature mean the same thing whatever the reward scale
    normalize_q: bool = True
    # add -alpha*log pi(A'|s') to the bootstrap value (SAC soft backup); off by default because
    # the chunk log-prob over H*A dims is large next to sparse per-step rewards
    backup_entropy: bool = False
    batch_size: int = 256
    # observation normalisation z = (s - mean) / max(std, obs_std_floor), stats from the demos.
    # From 3 demonstrations the spread of a randomised goal or object position is a few mm, so
    # a fresh reset lands at |z| of 4-8 on those dims; a floor in raw units (MetaWorld: metres)
    # bounds that. 1e-2 only guards constant dims (zero padding).
    obs_std_floor: float = 1e-2
    # critic-only updates before the actor/temperature start moving: a random critic's
    # gradient would otherwise drag a BC-initialised actor away from the demonstrations
    critic_warmup_steps: int = 0
    grad_clip_norm: float = 10.0  # 0 disables clipping
    # BC regularisation (seed 003): actor_loss = sac_loss + w(step) * bc_loss
    bc_weight: float = 1.0
    # mse: ||tanh(mean) - a*||^2 (seed 003); nll: -log pi(a*|s) (Q-chunking's BC term; its
    # gradient does not vanish when tanh saturates, which the Q term tends to cause)
    bc_loss: BCLoss = "nll"
    bc_decay: BCDecay = "exponential"
    bc_decay_steps: int = 5000  # exponential: half-life-like scale; linear: steps to reach bc_min_weight
    bc_decay_rate: float = 0.5
    bc_min_weight: float = 0.0
    actor_net: ActorConfig = field(default_factory=ActorConfig)
    critic_net: CriticConfig = field(default_factory=CriticConfig)
    # RL under delay (rl/delayed.py): rollouts and evaluation run through the async executor
    # with a chunk arriving rollout_delay = d steps after its observation; the critic scores
    # Q(s_t, executed prefix a_t..a_t+d-1, the chunk's executed part). d = 0 with sync is the
    # delay-free open-loop rollout.
    rollout_delay: int = 0
    rollout_strategy: RolloutStrategy = "sync"
    rollout_chunk_size_threshold: float = 0.5  # async trigger g: request when len(queue)/H <= g
    # reference_policy=bc (IBRL, Hu et al. 2024, "Imitation Bootstrapped Reinforcement Learning"):
    # the actor as it stands after BC initialisation is frozen as pi_ref; every decision
    # executes argmax_{A in {A_rl ~ pi, A_ref = pi_ref(s)}} min_j Q_j(s, A) (actor proposal),
    # and with reference_bootstrap the TD target bootstraps from the better of the two too:
    #     V(s') = max(min_j Q'_j(s', A'_rl), min_j Q'_j(s', A'_ref))
    # The RL actor can then not drag the executed policy below its BC start while the critic
    # is still wrong, which is what collapses BC-initialised SAC on sparse-ish tasks.
    reference_policy: ReferencePolicy = "none"
    reference_bootstrap: bool = True

    def __post_init__(self) -> None:
        _check_choice("actor", self.actor, ActorType)
        _check_choice("reference_policy", self.reference_policy, ReferencePolicy)
        _check_choice("critic", self.critic, CriticType)
        _check_choice("q_aggregation", self.q_aggregation, QAggregation)
        _check_choice("bc_decay", self.bc_decay, BCDecay)
        _check_choice("bc_loss", self.bc_loss, BCLoss)
        _check_positive("chunk_size", self.chunk_size)
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "init_temperature", "bc_decay_steps", "batch_size",
                     "obs_std_floor"):
            _check_positive(name, getattr(self, name))
        for name in ("grad_clip_norm", "bc_weight", "bc_min_weight", "critic_warmup_steps"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if not 0.0 < self.bc_decay_rate <= 1.0:
            raise ValueError(f"bc_decay_rate must be in (0, 1], got {self.bc_decay_rate}")
        self._check_rollout()

    def _check_rollout(self) -> None:
        _check_choice("rollout_strategy", self.rollout_strategy, RolloutStrategy)
        _check_positive("rollout_delay", self.rollout_delay, allow_zero=True)
        if not 0.0 <= self.rollout_chunk_size_threshold <= 1.0:
            raise ValueError(f"rollout_chunk_size_threshold must be in [0, 1], got {self.rollout_chunk_size_threshold}")
        if self.rollout_delay >= self.chunk_size:
            raise ValueError(f"rollout_delay={self.rollout_delay} must be < chunk_size={self.chunk_size}: the H-step "
                             "window after a request would hold no action of the requested chunk")
        if self.rollout_delay and self.critic == "first_action":
            raise ValueError("rollout_delay > 0 needs critic=chunk: Q(s_t, a_t) scores a_t, which is the executed "
                             "prefix under delay and not the actor's choice")

    @property
    def executed_offset(self) -> int:
        """Index of the actor's first executed action: d (async, labels t..t+H-1; the first d
        are stale on arrival) or 0 (sync: the robot idles d steps, then runs the chunk from 0)."""
        return executed_offset(self.rollout_strategy, self.rollout_delay)

    @property
    def obs_history_length(self) -> int:
        return self.actor_net.obs_history_length if self.actor == "sequence_act" else 1

    def bc_weight_at(self, step: int) -> float:
        """Seed 003's dynamically decaying BC weight at learner step ``step``.

        exponential: w = max(w_min, w0 * rate ** (step / decay_steps))
        linear:      w = w0 + (w_min - w0) * min(1, step / decay_steps)
        constant:    w = w0
        """
        w0, wmin = self.bc_weight, self.bc_min_weight
        if self.bc_decay == "constant" or w0 == 0.0:
            return w0
        if self.bc_decay == "linear":
            return w0 + (wmin - w0) * min(1.0, step / self.bc_decay_steps)
        return max(wmin, w0 * self.bc_decay_rate ** (step / self.bc_decay_steps))
