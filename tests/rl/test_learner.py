"""ChunkSAC contract: update stats, weights and state_dict round-trips, learning signal, config errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from chunkwise.rl.config import ActorConfig, CriticConfig, SACConfig
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.replay import Episode, EpisodeReplay, MixedReplay

torch.set_num_threads(1)
SMALL_ACTOR = ActorConfig(hidden_dims=(32,), dim_model=32, dim_feedforward=64, obs_history_length=2)
SMALL_CRITIC = CriticConfig(hidden_dims=(32, 32))


def _random_replays(seed: int = 0, s_dim: int = 5, a_dim: int = 2) -> MixedReplay:
    rng = np.random.default_rng(seed)
    reps = [EpisodeReplay(500, s_dim, a_dim) for _ in range(2)]
    for rep in reps:
        for e in range(3):
            t = 20
            s = rng.normal(size=(t + 1, s_dim))
            rep.add_episode(Episode(s[:-1], rng.uniform(-1, 1, (t, a_dim)), rng.normal(size=t), s[1:], e == 0))
    return MixedReplay(reps[0], reps[1], 0.5)


def _cfg(actor: str, critic: str, autoregressive: bool = False, **kw) -> SACConfig:  # type: ignore[no-untyped-def]
    net = ActorConfig(**{**SMALL_ACTOR.__dict__, "autoregressive": autoregressive})
    return SACConfig(actor=actor, critic=critic, chunk_size=3, batch_size=16, actor_net=net, critic_net=SMALL_CRITIC, **kw)


@pytest.mark.parametrize(
    "actor,critic,ar",
    [("mlp", "chunk", False), ("act", "chunk", False), ("act", "first_action", False),
     ("sequence_act", "chunk", False), ("sequence_act", "first_action", True)],
)
def test_update_contract(actor: str, critic: str, ar: bool) -> None:
    torch.manual_seed(0)
    cfg = _cfg(actor, critic, ar)
    learner = ChunkSAC(cfg, 5, 2)
    replay = _random_replays()
    rng = np.random.default_rng(0)
    before = {k: v.clone() for k, v in learner.critic_target.state_dict().items()}
    for _ in range(2):
        stats = learner.update(replay.sample(16, 3, cfg.gamma, cfg.obs_history_length, rng))
    for key in ("critic_loss", "q_mean", "actor_loss", "sac_loss", "bc_loss", "bc_weight", "temperature", "entropy"):
        assert math.isfinite(stats[key]), key
    assert stats["bc_loss"] != 0.0  # demo rows are in the batch
    assert learner.step == 2
    after = learner.critic_target.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # Polyak moved the targets
    chunk = learner.act(np.zeros((cfg.obs_history_length, 5), np.float32))
    assert chunk.shape == (3, 2) and np.all(np.abs(chunk) <= 1)


def test_state_dict_round_trip_through_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    cfg = _cfg("act", "chunk")
    a = ChunkSAC(cfg, 5, 2)
    replay = _random_replays()
    rng = np.random.default_rng(1)
    for _ in range(3):
        a.update(replay.sample(16, 3, cfg.gamma, 1, rng))
    sd = a.state_dict()
    assert {"log_alpha", "step"} <= set(sd)
    assert any(k.startswith("critic_target.") for k in sd) and any(k.startswith("optim.critic.") for k in sd)
    save_file(sd, str(tmp_path / "learner.safetensors"))
    b = ChunkSAC(cfg, 5, 2)
    b.load_state_dict(load_file(str(tmp_path / "learner.safetensors")))
    for k, v in b.state_dict().items():
        torch.testing.assert_close(v, sd[k], msg=k)
    # identical continuation: same batch + same torch seed -> same stats and parameters
    batch = replay.sample(16, 3, cfg.gamma, 1, rng)
    torch.manual_seed(5)
    sa = a.update(batch)
    torch.manual_seed(5)
    sb = b.update(batch)
    assert sa == pytest.approx(sb)
    sa_, sb_ = a.state_dict(), b.state_dict()
    assert set(sa_) == set(sb_)
    for k, v in sa_.items():
        torch.testing.assert_close(v, sb_[k], msg=k)


def test_get_and_load_weights_are_the_actor_only() -> None:
    cfg = _cfg("sequence_act", "chunk")
    a, b = ChunkSAC(cfg, 5, 2), ChunkSAC(cfg, 5, 2)
    a.set_obs_stats(np.arange(5.0), np.full(5, 2.0))
    w = a.get_weights()
    assert all(isinstance(v, torch.Tensor) for v in w.values())
    assert "obs_mean" in w and not any(k.startswith("critic") for k in w)
    b.load_weights(w)
    obs = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_allclose(a.act(obs, deterministic=True), b.act(obs, deterministic=True), atol=1e-6)


def test_obs_std_floor_bounds_the_normalised_observation() -> None:
    """std -> max(std, floor) in actor, critics and targets; a larger std is kept as it is."""
    cfg = dataclasses.replace(_cfg("mlp", "chunk"), obs_std_floor=0.1)
    learner = ChunkSAC(cfg, 3, 2)
    learner.set_obs_stats(np.zeros(3), np.array([0.001, 0.05, 0.5]))
    for m in (learner.actor, learner.critic, learner.critic_target):
        torch.testing.assert_close(m.obs_std, torch.tensor([0.1, 0.1, 0.5]))
    # a goal 0.4 m from the demos' mean: |z| = 4 with the floor, 400 without
    assert learner.actor.normalize(torch.tensor([[0.4, 0.0, 0.0]]))[0, 0].item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="obs_std_floor"):
        dataclasses.replace(cfg, obs_std_floor=0.0)


def test_critic_regresses_known_chunk_return() -> None:
    """Action-independent chain: r = -1 per step, terminal after T steps, state = steps left.

    The true value is Q(s_t, .) = -(1 - gamma^(T-t)) / (1 - gamma); H-step backups must
    reach it (a fixed point that no actor can change, so it tests the critic path alone).
    """
    torch.manual_seed(2)
    t_len, gamma = 15, 0.9
    cfg = SACConfig(actor="mlp", critic="chunk", chunk_size=4, gamma=gamma, batch_size=64, critic_lr=3e-3,
                    tau=0.05, bc_weight=0.0, actor_net=SMALL_ACTOR, critic_net=CriticConfig(hidden_dims=(64, 64)))
    learner = ChunkSAC(cfg, 1, 1)
    rep = EpisodeReplay(1000, 1, 1)
    rng = np.random.default_rng(0)
    left = np.arange(t_len, -1, -1, dtype=np.float32)[:, None] / t_len
    for _ in range(5):
        rep.add_episode(Episode(left[:-1], rng.uniform(-1, 1, (t_len, 1)), -np.ones(t_len), left[1:], True))
    learner.set_obs_stats(np.array([0.5]), np.array([0.3]))
    for _ in range(400):
        learner.update(rep.sample(32, 4, gamma, 1, rng))
    with torch.no_grad():
        states = torch.as_tensor(left[:-1])
        q = learner.critic(states, torch.zeros(t_len, 4)).mean(0).numpy()
    truth = -(1 - gamma ** np.arange(t_len, 0, -1)) / (1 - gamma)
    np.testing.assert_allclose(q, truth, atol=0.35)


def test_bc_weight_schedule_formula() -> None:
    cfg = SACConfig(bc_weight=2.0, bc_decay="exponential", bc_decay_steps=100, bc_decay_rate=0.5, bc_min_weight=0.1)
    assert cfg.bc_weight_at(0) == 2.0
    assert cfg.bc_weight_at(100) == pytest.approx(1.0)
    assert cfg.bc_weight_at(200) == pytest.approx(0.5)
    assert cfg.bc_weight_at(10_000) == pytest.approx(0.1)
    lin = SACConfig(bc_weight=1.0, bc_decay="linear", bc_decay_steps=10, bc_min_weight=0.2)
    assert lin.bc_weight_at(5) == pytest.approx(0.6) and lin.bc_weight_at(50) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"actor": "transformer"}, r"actor='transformer' is not valid; choose one of \['mlp', 'act', 'sequence_act'\]"),
     ({"critic": "q"}, r"critic='q' is not valid; choose one of \['chunk', 'first_action'\]"),
     ({"gamma": 1.5}, "gamma"),
     ({"bc_loss": "l1"}, "bc_loss"),
     ({"actor_net": "bad"}, None)],
)
def test_config_errors_name_the_field(kwargs: dict, match: str | None) -> None:
    if match is None:
        with pytest.raises(ValueError, match="dim_model"):
            ActorConfig(dim_model=30, n_heads=4)
        return
    with pytest.raises(ValueError, match=match):
        SACConfig(**kwargs)


def test_actor_memory_choice_is_validated() -> None:
    with pytest.raises(ValueError, match=r"actor_net.memory='tokens' is not valid; choose one of \['state', 'state_and_features'\]"):
        ActorConfig(memory="tokens")


def _cross_attention_outputs(actor) -> list[torch.Tensor]:
    """What each decoder layer's cross-attention adds to the chunk queries."""
    seen: list[torch.Tensor] = []
    for layer in actor.decoder.layers:
        layer.multihead_attn.register_forward_hook(lambda _m, _i, out: seen.append(out[0].detach()))
    return seen


@pytest.mark.parametrize("memory,query_dependent", [("state", False), ("state_and_features", True)])
def test_act_memory_one_token_gives_every_query_the_same_cross_attention(memory: str, query_dependent: bool) -> None:
    """With one memory token the softmax has one key, so every chunk step reads the same
    vector; per-feature tokens let the steps attend differently."""
    from chunkwise.rl.networks import make_actor

    torch.manual_seed(0)
    actor = make_actor("act", 6, 2, 4, ActorConfig(dim_model=16, dim_feedforward=32, n_heads=2, memory=memory))
    seen = _cross_attention_outputs(actor)
    actor.distribution(torch.randn(3, 1, 6))
    per_step_spread = (seen[0] - seen[0][:, :1]).abs().max().item()
    assert (per_step_spread > 1e-4) == query_dependent


class _QuadraticQ(torch.nn.Module):
    """Q_j(s, A) = -||A - target||^2 for both ensemble members (a known optimum)."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.flatten())
        self.w = torch.nn.Parameter(torch.zeros(()))  # so requires_grad_ has something to toggle

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q = -((actions.reshape(actions.shape[0], -1) - self.target) ** 2).sum(-1) + 0.0 * self.w
        return torch.stack([q, q])


@pytest.mark.parametrize("actor", ["mlp", "act"])
def test_actor_step_climbs_a_known_q(actor: str) -> None:
    """With a fixed critic whose optimum is a given chunk, the actor's mean chunk moves there."""
    torch.manual_seed(3)
    target = torch.tensor([[0.5, -0.3], [0.2, 0.6], [-0.4, 0.1]])
    cfg = _cfg(actor, "chunk", bc_weight=0.0, init_temperature=1e-3, auto_temperature=False, actor_lr=3e-3)
    learner = ChunkSAC(cfg, 5, 2)
    learner.critic = _QuadraticQ(target)
    b = {k: torch.as_tensor(v) for k, v in _random_replays().sample(32, 3, cfg.gamma, 1, np.random.default_rng(0)).items()}
    err0 = (learner.actor(b["obs"], deterministic=True).actions - target).abs().mean()
    for _ in range(150):
        learner._actor_step(b, b["obs"][:, -1])
    err = (learner.actor(b["obs"], deterministic=True).actions - target).abs().mean()
    assert err < 0.05 < err0
