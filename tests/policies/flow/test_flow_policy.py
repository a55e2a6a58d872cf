"""Flow-matching policy: training, sampling, modes, checkpoints, config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chunkwise.policies import load
from chunkwise.policies.flow.config import FlowConfig
from chunkwise.types import Prefix

from flow_helpers import A, S, tiny_config, tiny_policy, toy_batch


def test_training_loss_falls_on_a_tiny_set():
    torch.manual_seed(0)
    policy = tiny_policy()
    batch = toy_batch(32)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss, terms = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(terms["flow_loss"])
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.5 * first, (first, last)


def test_padded_steps_do_not_contribute_to_the_loss():
    policy = tiny_policy()
    batch = toy_batch(8)
    batch["action_is_pad"][:] = False
    batch["action_is_pad"][:, 5:] = True
    torch.manual_seed(1)
    l1, _ = policy.compute_loss(batch)
    batch["action"][:, 5:] = 1e6  # garbage behind the padding must not matter
    torch.manual_seed(1)
    l2, _ = policy.compute_loss(batch)
    assert torch.allclose(l1, l2)


def _obs(n: int = 2) -> dict:
    rng = np.random.default_rng(0)
    return {"observation.state": rng.standard_normal((n, S)).astype(np.float32), "task": ["toy"] * n}


@pytest.mark.parametrize("mode", ["none", "rtc_guided", "rtc_trained", "delta_expert"])
def test_predict_chunk_every_mode(mode):
    policy = tiny_policy(delta_expert=True, rtc_training=True, prefix_mode=mode)
    assert policy.metadata.uses_prefix == (mode != "none")
    assert policy.metadata.prefix_length == {"none": None, "delta_expert": 5}.get(mode, 0)
    prefix = [Prefix(np.ones((6, A), np.float32), 2), None]
    out = policy.predict_chunk(_obs(), prefix)
    assert out.shape == (2, 8, A) and out.dtype == np.float32 and np.isfinite(out).all()


def test_reset_replays_the_same_noise():
    policy = tiny_policy()
    a = policy.predict_chunk(_obs())
    b = policy.predict_chunk(_obs())
    policy.reset()
    c = policy.predict_chunk(_obs())
    assert not np.allclose(a, b) and np.array_equal(a, c)


def test_rtc_trained_returns_the_queued_prefix_exactly():
    policy = tiny_policy(rtc_training=True, prefix_mode="rtc_trained")
    queued = np.random.default_rng(1).uniform(-1, 1, (6, A)).astype(np.float32)
    out = policy.predict_chunk(_obs(1), [Prefix(queued, 3)])
    # normalize -> unnormalize round trip: equal to float32 rounding
    np.testing.assert_allclose(out[0, :3], queued[:3], atol=1e-6)
    assert not np.allclose(out[0, 3:6], queued[3:6], atol=1e-3)


def test_rtc_guided_hard_prefix_is_exact_and_beta0_is_plain():
    policy = tiny_policy(prefix_mode="rtc_guided")
    queued = np.random.default_rng(2).uniform(-1, 1, (6, A)).astype(np.float32)
    policy.set_prefix_mode("rtc_guided", max_guidance_weight=0.0)
    policy.reset()
    guided0 = policy.predict_chunk(_obs(1), [Prefix(queued, 3)])
    policy.set_prefix_mode("none")
    policy.reset()
    plain = policy.predict_chunk(_obs(1), [Prefix(queued, 3)])
    assert np.array_equal(guided0, plain)
    policy.set_prefix_mode("rtc_guided", max_guidance_weight=5.0, schedule="ones", hard_prefix=True)
    out = policy.predict_chunk(_obs(1), [Prefix(queued, 3)])
    np.testing.assert_allclose(out[0, :3], queued[:3], atol=1e-6)


def test_checkpoint_round_trip_through_the_registry(tmp_path):
    policy = tiny_policy(delta_expert=True, prefix_mode="delta_expert")
    policy.save_pretrained(tmp_path / "ck")
    loaded = load(tmp_path / "ck")
    assert loaded.metadata == policy.metadata
    prefix = [Prefix(np.zeros((5, A), np.float32), 1), None]
    policy.reset()
    loaded.reset()
    assert np.array_equal(policy.predict_chunk(_obs(), prefix), loaded.predict_chunk(_obs(), prefix))


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="prefix_mode.*choose one of"):
        tiny_config(prefix_mode="magic")
    with pytest.raises(ValueError, match="time_schedule"):
        tiny_config(time_schedule="cosine")
    with pytest.raises(ValueError, match="delta_expert=True"):
        tiny_config(prefix_mode="delta_expert")
    with pytest.raises(ValueError, match="rtc_training=True"):
        tiny_config(prefix_mode="rtc_trained")
    with pytest.raises(ValueError, match="rtc_max_delay"):
        tiny_config(rtc_max_delay=8)
    with pytest.raises(ValueError, match="delta_timestep"):
        tiny_config(delta_timestep=1.0)
    assert FlowConfig().type == "flow"


def test_beta_time_schedule_puts_mass_near_the_noise_end():
    from chunkwise.policies.flow.model import sample_time

    torch.manual_seed(0)
    t = sample_time(tiny_config(), 20000)
    assert 0.001 <= float(t.min()) and float(t.max()) <= 0.999
    # noise level 1 - t ~ Beta(1.5, 1): E[t] = 1 - 1.5/2.5 = 0.4
    assert abs(float(t.mean()) - 0.4) < 0.01 and float((t < 0.5).float().mean()) > 0.6
    u = sample_time(tiny_config(time_schedule="uniform"), 20000)
    assert abs(float(u.mean()) - 0.5) < 0.01


def test_training_sees_each_examples_task_and_a_missing_task_means_the_datasets():
    """Regression: the trainer's to_tensors used to drop the task strings, so training
    encoded one task while the env sent another at inference (~4x worse actions). Now the
    per-example tasks reach compute_loss (multi-task data), and an observation without a
    task means the dataset's task."""
    from chunkwise.training.trainer import to_tensors

    policy = tiny_policy()
    batch = dict(toy_batch(4), task=["toy", "other", "toy", "other"])
    seen: list[list[str]] = []
    real = policy.model.obs_encoder.forward

    def spy(state, tasks, images=()):
        seen.append(list(tasks))
        return real(state, tasks, images)

    policy.model.obs_encoder.forward = spy
    train_batch = to_tensors(batch)
    assert train_batch["task"] == ["toy", "other", "toy", "other"]  # what the trainer hands compute_loss
    policy.compute_loss(train_batch)
    policy.predict_chunk({"observation.state": batch["observation.state"].numpy()})
    assert seen[0] == ["toy", "other", "toy", "other"] and seen[1] == ["toy"] * 4
    with_task = policy.encode({"observation.state": batch["observation.state"], "task": ["toy"] * 4})
    without = policy.encode({"observation.state": batch["observation.state"]})
    assert torch.equal(with_task.tokens, without.tokens)


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_rtc_training_prob_is_the_fraction_of_delayed_examples(prob):
    """d ~ U{0..4} on a fraction ``prob`` of the batch, d = 0 elsewhere: index 0 is frozen
    (per-token time 1, no loss) in prob·4/5 of the examples."""
    policy = tiny_policy(rtc_training=True, rtc_training_prob=prob, time_schedule="uniform")
    seen = {}
    real = policy.model.velocity_net.forward

    def spy(obs, x_t, t, token_t=None):
        seen["token_t"] = token_t
        return real(obs, x_t, t, token_t)

    policy.model.velocity_net.forward = spy
    n = 4000
    batch = toy_batch(n)
    obs = policy.encode(batch)
    actions = policy.normalizer.normalize("action", batch["action"])
    policy.model.flow_loss(obs, actions, generator=torch.Generator().manual_seed(1))
    frozen0 = float((seen["token_t"][:, 0] == 1.0).float().mean())
    assert abs(frozen0 - prob * 4 / 5) < 0.03


def test_rtc_training_prob_validated():
    with pytest.raises(ValueError, match="rtc_training_prob"):
        tiny_config(rtc_training_prob=1.5)
