"""IBRL (reference_policy=bc): the critic picks between the RL and the frozen BC chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from chunkwise.rl.config import ActorConfig, CriticConfig, SACConfig
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.proposal import committed_prefix, executed_window, pick_proposal
from chunkwise.rl.replay import Episode, EpisodeReplay, MixedReplay
from chunkwise.types import Prefix

torch.set_num_threads(1)
S, A, H = 5, 2, 4


class DistanceCritic(torch.nn.Module):
    """Two members, Q_j(s, a) = -||a - goal||^2 - j: the higher Q is the window nearer ``goal``."""

    def __init__(self, goal: torch.Tensor) -> None:
        super().__init__()
        self.goal = goal

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q = -((actions - self.goal) ** 2).sum(-1)
        return torch.stack([q, q - 1.0])


def test_executed_window_is_prefix_then_the_chunk_from_its_offset() -> None:
    chunk = torch.arange(H, dtype=torch.float32).reshape(1, H, 1) + 10  # labels 10 11 12 13
    prefix = torch.tensor([[[1.0], [2.0]]])
    assert executed_window(prefix, chunk, 0, 0) is chunk
    #   d = 2 async: the first 2 labels are stale on arrival -> [p0 p1 c2 c3]
    assert executed_window(prefix, chunk, 2, 2).flatten().tolist() == [1, 2, 12, 13]
    #   d = 2 sync: the robot idles through the prefix, then runs the chunk from 0 -> [p0 p1 c0 c1]
    assert executed_window(prefix, chunk, 2, 0).flatten().tolist() == [1, 2, 10, 11]


def test_pick_proposal_takes_the_window_the_critic_scores_higher_per_row() -> None:
    rl = torch.zeros(2, H, A)
    ref = torch.ones(2, H, A)
    goal = torch.ones(H * A)
    best, idx = pick_proposal(DistanceCritic(goal), torch.zeros(2, S), [rl, ref], "chunk")
    assert idx.tolist() == [1, 1] and torch.equal(best, ref)
    # row 1's goal is the RL chunk: choices are per row
    goal2 = torch.stack([torch.ones(H * A), torch.zeros(H * A)])
    best, idx = pick_proposal(DistanceCritic(goal2), torch.zeros(2, S), [rl, ref], "chunk")
    assert idx.tolist() == [1, 0] and torch.equal(best[0], ref[0]) and torch.equal(best[1], rl[1])
    # under delay only the executed part counts: the chunks differ only in their stale labels
    # 0, 1, so both windows are the same and the tie goes to the RL proposal
    rl_d, ref_d = torch.zeros(1, H, A), torch.zeros(1, H, A)
    ref_d[:, :2] = 1.0
    prefix = torch.ones(1, 2, A)
    _, idx = pick_proposal(DistanceCritic(torch.ones(H * A)), torch.zeros(1, S), [rl_d, ref_d], "chunk", prefix, 2, 2)
    assert idx.tolist() == [0]
    # the first-action critic reads action 0 of the window only
    _, idx = pick_proposal(DistanceCritic(torch.ones(A)), torch.zeros(1, S), [rl_d, ref_d], "first_action")
    assert idx.tolist() == [1]


def test_committed_prefix_pads_a_dry_queue_with_the_idle_action() -> None:
    idle = np.array([0.0, 0.5], np.float32)
    p = Prefix(actions=np.ones((1, A), np.float32), delay=3)
    np.testing.assert_array_equal(committed_prefix(p, idle), [[1, 1], [0, 0.5], [0, 0.5]])
    p = Prefix(actions=np.arange(10, dtype=np.float32).reshape(5, A), delay=2)
    np.testing.assert_array_equal(committed_prefix(p, idle), [[0, 1], [2, 3]])


def _learner(**kw) -> ChunkSAC:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = SACConfig(actor="act", critic="chunk", chunk_size=H, batch_size=16, reference_policy="bc",
                    actor_net=ActorConfig(dim_model=32, dim_feedforward=64), critic_net=CriticConfig(hidden_dims=(32,)),
                    **kw)
    learner = ChunkSAC(cfg, S, A)
    learner.set_reference()
    with torch.no_grad():  # the RL actor moves away from pi_ref, as RL updates would
        for p in learner.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return learner


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rep = EpisodeReplay(200, S, A)
    for e in range(3):
        s = rng.normal(size=(21, S))
        rep.add_episode(Episode(s[:-1], rng.uniform(-1, 1, (20, A)), rng.normal(size=20), s[1:], e == 0))
    return MixedReplay(rep, rep, 0.5).sample(16, H, 0.99, 1, rng)


def test_act_executes_the_proposal_with_the_higher_min_q() -> None:
    learner = _learner()
    obs = np.random.default_rng(1).normal(size=(1, S)).astype(np.float32)
    x = torch.as_tensor(obs)[None]
    rl = learner.actor(x, deterministic=True).actions
    ref = learner.reference(x, deterministic=True).actions
    with torch.no_grad():
        q = [learner.critic(x[:, -1], c.flatten(1)).min(0).values.item() for c in (rl, ref)]
    want = (rl if q[0] >= q[1] else ref)[0].detach().numpy()
    np.testing.assert_allclose(learner.act(obs, deterministic=True), want, atol=1e-6)
    assert sum(learner.picks.values()) == 1


@pytest.mark.parametrize("bootstrap", [True, False])
def test_td_target_bootstraps_from_the_better_proposal(bootstrap: bool) -> None:
    """y = sum_i gamma^i r_i + gamma^k mask max(min_j Q'_j(s', A'_rl), min_j Q'_j(s', A'_ref))."""
    learner = _learner(reference_bootstrap=bootstrap)
    b = {k: torch.as_tensor(v) for k, v in _batch().items()}
    torch.manual_seed(3)  # the same A'_rl sample in all three computations
    with_ref = learner.compute_target(b)
    ref, learner.reference = learner.reference, None
    torch.manual_seed(3)
    without = learner.compute_target(b)
    if not bootstrap:
        torch.testing.assert_close(with_ref, without)
        return
    with torch.no_grad():
        nxt = b["next_obs"]
        torch.manual_seed(3)
        v_rl = learner.critic_target(nxt[:, -1], learner.actor(nxt).actions.flatten(1)).min(0).values
        v_ref = learner.critic_target(nxt[:, -1], ref(nxt, deterministic=True).actions.flatten(1)).min(0).values
    disc = (0.99 ** b["valid"].to(torch.float32)) * b["mask"]
    torch.testing.assert_close(with_ref - without, disc * torch.clamp(v_ref - v_rl, min=0))
    assert torch.any(v_ref > v_rl) and torch.any(v_ref < v_rl)  # both proposals win somewhere


def test_state_dict_keeps_the_reference(tmp_path: Path) -> None:
    a = _learner()
    a.update(_batch())
    sd = a.state_dict()
    assert any(k.startswith("reference.") for k in sd)
    save_file(sd, str(tmp_path / "learner.safetensors"))
    b = ChunkSAC(a.cfg, S, A)  # a resumed run: no set_reference(), the checkpoint brings it
    b.load_state_dict(load_file(str(tmp_path / "learner.safetensors")))
    assert b.reference is not None
    for (k, v), (_, w) in zip(a.reference.state_dict().items(), b.reference.state_dict().items()):
        torch.testing.assert_close(v, w, msg=k)
    assert not any(p.requires_grad for p in b.reference.parameters())
