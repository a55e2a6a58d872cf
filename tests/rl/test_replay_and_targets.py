"""Chunk windows, H-step targets by hand (done masking, partial chunks), replay mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chunkwise.rl.config import CriticConfig, SACConfig
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.losses import chunk_td_target
from chunkwise.rl.replay import Episode, EpisodeReplay, MixedReplay

torch.set_num_threads(1)
G = 0.9


def _episode(t: int, terminated: bool, base: float = 0.0, s_dim: int = 2) -> Episode:
    """State = (base + step index, ...), action = step index, reward = 1 + step index."""
    states = np.stack([np.full(s_dim, base + i) for i in range(t + 1)]).astype(np.float32)
    actions = np.arange(t, dtype=np.float32)[:, None].repeat(1, 1)
    return Episode(states[:-1], actions, 1.0 + np.arange(t), states[1:], terminated)


def test_td_target_hand_computation() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 0.0], [-1.0, -1.0, -1.0]])
    valid = torch.tensor([3, 2, 3])
    mask = torch.tensor([1.0, 0.0, 1.0])
    v = torch.tensor([10.0, 10.0, -5.0])
    y = chunk_td_target(rewards, valid, mask, v, G)
    expected = [
        1 + G * 2 + G**2 * 3 + G**3 * 10,  # full window, bootstrap with gamma^3
        1 + G * 2,  # terminal after 2 steps: no bootstrap
        -1 - G - G**2 + G**3 * -5,
    ]
    torch.testing.assert_close(y, torch.tensor(expected))
    # rewards beyond `valid` are ignored even if non-zero
    y2 = chunk_td_target(torch.tensor([[1.0, 2.0, 99.0]]), torch.tensor([2]), torch.tensor([1.0]), torch.tensor([4.0]), G)
    torch.testing.assert_close(y2, torch.tensor([1 + G * 2 + G**2 * 4]))


def test_windows_partial_chunks_and_done_masking() -> None:
    rb = EpisodeReplay(100, 2, 1)
    rb.add_episode(_episode(5, terminated=True))  # indices 0..4, terminal at the end
    rb.add_episode(_episode(4, terminated=False, base=100.0))  # indices 5..8, time-limit truncation
    b = rb.gather(np.array([0, 3, 4, 5, 7]), chunk_size=3, gamma=G, history=1)
    np.testing.assert_array_equal(b["valid"], [3, 2, 1, 3, 2])
    # t=0: full window inside the episode, bootstrap from s_3
    np.testing.assert_allclose(b["rewards"][0], [1, 2, 3])
    np.testing.assert_allclose(b["next_obs"][0, -1], [3, 3])
    assert b["mask"][0] == 1.0
    # t=3: two steps left, episode terminated -> mask 0, chunk padded with the last action
    np.testing.assert_allclose(b["rewards"][1], [4, 5, 0])
    np.testing.assert_allclose(b["chunk"][1, :, 0], [3, 4, 4])
    np.testing.assert_allclose(b["step_mask"][1], [1, 1, 0])
    assert b["mask"][1] == 0.0
    np.testing.assert_allclose(b["discounted_return"][1], 4 + G * 5)
    np.testing.assert_allclose(b["bootstrap_discount"][1], G**2)
    # t=4: last step of a terminated episode
    assert b["mask"][2] == 0.0 and b["valid"][2] == 1
    # truncated episode: a window that reaches its end still bootstraps (mask 1) from s_T
    np.testing.assert_allclose(b["rewards"][4], [3, 4, 0])
    assert b["mask"][4] == 1.0
    np.testing.assert_allclose(b["next_obs"][4, -1], [104, 104])
    # first-action fields: 1-step transition
    np.testing.assert_allclose(b["first_reward"], [1, 4, 5, 1, 3])
    np.testing.assert_allclose(b["first_mask"], [1, 1, 0, 1, 1])
    np.testing.assert_allclose(b["first_next_obs"][:, -1, 0], [1, 4, 5, 101, 103])


def test_history_is_padded_at_episode_start() -> None:
    rb = EpisodeReplay(100, 1, 1)
    rb.add_episode(_episode(3, terminated=False, s_dim=1))
    rb.add_episode(_episode(6, terminated=True, base=10.0, s_dim=1))  # indices 3..8
    b = rb.gather(np.array([0, 4, 7]), chunk_size=2, gamma=G, history=3)
    np.testing.assert_allclose(b["obs"][..., 0], [[0, 0, 0], [10, 10, 11], [12, 13, 14]])
    # next history ends at s_{t+k}: t=4 (offset 1), k=2 -> s_3 of episode 2
    np.testing.assert_allclose(b["next_obs"][..., 0], [[0, 1, 2], [11, 12, 13], [14, 15, 16]])
    np.testing.assert_allclose(b["first_next_obs"][..., 0], [[0, 0, 1], [10, 11, 12], [13, 14, 15]])


def test_ring_buffer_overwrite_keeps_windows_consistent() -> None:
    rb = EpisodeReplay(10, 1, 1)
    for i in range(4):
        rb.add_episode(_episode(4, terminated=True, base=100.0 * i, s_dim=1))
    assert len(rb) == 10 and rb.n_episodes == 4
    b = rb.sample(500, 3, G, 2, np.random.default_rng(0))
    # every window reads one episode only: obs and next_obs come from the same hundred
    same = np.floor(b["obs"][..., 0] / 100) == np.floor(b["next_obs"][..., 0] / 100)[:, :1]
    assert same.all()
    assert (b["valid"] >= 1).all() and (b["valid"] <= 3).all()


@pytest.mark.parametrize("ratio", [0.5, 0.25, 1.0])
def test_mixing_ratio(ratio: float) -> None:
    off, on = EpisodeReplay(100, 2, 1), EpisodeReplay(100, 2, 1)
    off.add_episode(_episode(20, True, base=-1000.0))
    on.add_episode(_episode(20, False, base=1000.0))
    mixed = MixedReplay(off, on, ratio)
    b = mixed.sample(64, 4, G, 1, np.random.default_rng(1))
    n_demo = int(round(64 * ratio))
    assert b["is_demo"].sum() == n_demo
    assert (b["obs"][:n_demo, -1, 0] < 0).all() and (b["obs"][n_demo:, -1, 0] > 0).all()


def test_mixing_falls_back_when_one_side_is_empty() -> None:
    off, on = EpisodeReplay(100, 2, 1), EpisodeReplay(100, 2, 1)
    off.add_episode(_episode(10, True))
    b = MixedReplay(off, on, 0.5).sample(32, 4, G, 1, np.random.default_rng(2))
    assert b["is_demo"].sum() == 32
    with pytest.raises(ValueError, match="offline_ratio"):
        MixedReplay(off, on, 1.5)


@pytest.mark.parametrize("critic", ["chunk", "first_action"])
def test_learner_target_equals_hand_computation(critic: str) -> None:
    """compute_target == sum_i gamma^i r + gamma^k * mask * min_j Q_tgt,j(s', pi(s')) by hand."""
    cfg = SACConfig(actor="mlp", critic=critic, chunk_size=3, gamma=G, critic_net=CriticConfig(hidden_dims=(16,)))
    learner = ChunkSAC(cfg, 2, 1)
    rb = EpisodeReplay(100, 2, 1)
    rb.add_episode(_episode(5, terminated=True))
    batch = rb.gather(np.array([0, 2, 3, 4]), 3, G, 1)
    b = {k: torch.as_tensor(v) for k, v in batch.items()}
    torch.manual_seed(7)
    y = learner.compute_target(b).numpy()
    torch.manual_seed(7)
    with torch.no_grad():
        if critic == "chunk":
            nxt = learner.actor(b["next_obs"]).actions
            q = learner.critic_target(b["next_obs"][:, -1], nxt.flatten(1)).min(0).values.numpy()
        else:
            nxt = learner.actor(b["first_next_obs"]).actions
            q = learner.critic_target(b["first_next_obs"][:, -1], nxt[:, 0]).min(0).values.numpy()
    if critic == "chunk":
        # windows: t=0 -> r 1,2,3 (k=3, mask 1); t=2 -> 3,4,5 (k=3, terminal); t=3 -> 4,5; t=4 -> 5
        expected = [1 + 2 * G + 3 * G**2 + G**3 * q[0], 3 + 4 * G + 5 * G**2, 4 + 5 * G, 5.0]
    else:
        expected = [1 + G * q[0], 3 + G * q[1], 4 + G * q[2], 5.0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_demos_from_a_lerobot_v3_dataset(lerobot_tiny) -> None:  # type: ignore[no-untyped-def]
    """The fixture written by LeRobot itself: 2 episodes (7, 5 frames), success on the last frame."""
    from chunkwise.rl.demos import load_dataset_episodes

    eps = load_dataset_episodes(lerobot_tiny, reward_type="sparse")
    assert [len(e) for e in eps] == [7, 5]
    np.testing.assert_allclose(eps[1].actions[:, 0], [100, 101, 102, 103, 104])  # episode*100 + frame
    np.testing.assert_allclose(eps[0].rewards, [-1, -1, -1, -1, -1, -1, 0])  # success on the last frame
    assert all(e.terminated for e in eps)
    np.testing.assert_allclose(eps[0].next_states[:-1], eps[0].states[1:])
    dense = load_dataset_episodes(lerobot_tiny, reward_type="dense", reward_scale=0.5)
    np.testing.assert_allclose(dense[1].rewards, 0.5 * np.arange(5))
    rb = EpisodeReplay(100, 39, 4)
    for e in eps:
        rb.add_episode(e)
    b = rb.gather(np.array([5]), 4, G, 1)  # episode 0, frames 5..6 then terminal
    assert b["valid"][0] == 2 and b["mask"][0] == 0.0
