"""``--policy.type=flow`` through the shared BC trainer (draccus flags, loss, checkpoint, resume)."""

from __future__ import annotations

import json

import draccus
import numpy as np
import pytest
import torch
from flow_helpers import tiny_policy, toy_batch

from chunkwise.policies.flow.config import FlowConfig
from chunkwise.policies.registry import load
from chunkwise.training.train import TrainConfig, run_training

S, A, H = 5, 3, 6


class LinesDataset:
    """ChunkDataset look-alike: chunk = c(state) + s(state)·i, learnable from the state."""

    fps = 10.0

    def __init__(self, n: int = 64) -> None:
        rng = np.random.default_rng(0)
        self.state = rng.normal(size=(n, S)).astype(np.float32)
        i = np.arange(H, dtype=np.float32)[None, :, None]
        self.action = (np.tanh(self.state[:, None, :A]) + 0.2 * self.state[:, None, A - 1 : A] * i).astype(np.float32)
        self.stats = {
            "observation.state": {"mean": self.state.mean(0), "std": self.state.std(0)},
            "action": {"mean": self.action.mean((0, 1)), "std": self.action.std((0, 1))},
        }

    def __len__(self) -> int:
        return len(self.state)

    def get_batch(self, idx):
        idx = np.asarray(idx)
        return {"observation.state": self.state[idx], "action": self.action[idx],
                "action_is_pad": np.zeros((len(idx), H), bool), "task": ["lines"] * len(idx)}

    def __getitem__(self, i):
        return {k: v[0] for k, v in self.get_batch([i]).items()}


def _args(out, steps):
    return [
        "--policy.type=flow", "--dataset.root=synthetic", f"--output_dir={out}", f"--steps={steps}",
        "--batch_size=16", "--log_every=10", "--save_every=15", "--num_threads=1", "--progress=false",
        f"--policy.chunk_size={H}", "--policy.n_action_steps=3", "--policy.dim_model=32", "--policy.n_heads=2",
        "--policy.n_blocks=1", "--policy.delta_n_blocks=1", "--policy.rtc_max_delay=3", "--policy.lr=3e-3",
        "--policy.warmup_steps=5", "--policy.rtc_training=true", "--policy.delta_expert=true",
        "--policy.rtc.schedule=linear", "--policy.context_noise=chunk_error",
    ]


def test_flow_trains_with_the_shared_trainer_and_resumes_exactly(tmp_path):
    cfg = draccus.parse(TrainConfig, args=_args(tmp_path / "a", 30))
    assert isinstance(cfg.policy, FlowConfig) and cfg.policy.rtc.schedule == "linear"
    run_training(cfg, dataset=LinesDataset())
    recs = [json.loads(ln) for ln in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["flow_loss"] for r in recs if "flow_loss" in r]
    assert "delta_loss" in recs[0] and losses[-1] < losses[0]
    policy = load(tmp_path / "a" / "checkpoints" / "last")
    assert policy.config.rtc_training and policy.config.rtc.schedule == "linear"
    # killed during step 18 (after the step-15 checkpoint), resumed to 30 == uninterrupted 30:
    # every random draw of the flow loss (t, noise, delays, context noise) uses the
    # trainer-seeded global generator
    killed = LinesDataset()
    original, calls = killed.get_batch, {"n": 0}

    def get_batch(idx):
        calls["n"] += 1  # call 1 is the dataset probe, call k+1 is step k
        if calls["n"] == 19:
            raise KeyboardInterrupt
        return original(idx)

    killed.get_batch = get_batch
    with pytest.raises(KeyboardInterrupt):
        run_training(draccus.parse(TrainConfig, args=_args(tmp_path / "b", 30)), dataset=killed)
    run_training(draccus.parse(TrainConfig, args=_args(tmp_path / "b", 30) + ["--resume=true"]), dataset=LinesDataset())
    b = load(tmp_path / "b" / "checkpoints" / "last")
    for (k, va), vb in zip(policy.state_dict().items(), b.state_dict().values()):
        assert np.allclose(va.numpy(), vb.numpy(), atol=1e-6), k


def test_forced_prefix_actions_get_no_loss():
    """prefix_length marks a prefix branch's stale-plan actions (data/branches.py): changing
    them must not change the flow loss or the delta-expert loss beyond the context they feed."""
    policy = tiny_policy(delta_expert=True)
    batch = toy_batch(16)
    batch["prefix_length"] = torch.tensor([3] * 8 + [0] * 8)

    def flow_loss(b):
        torch.manual_seed(1)
        actions = policy.normalizer.normalize("action", b["action"])
        obs = policy.encode(b)
        return policy.model.flow_loss(obs, actions, b["action_is_pad"], prefix_length=b["prefix_length"])[0]

    changed = dict(batch, action=batch["action"].clone())
    changed["action"][:8, :3] += 5.0  # only forced steps of the branch examples
    assert torch.equal(flow_loss(batch), flow_loss(changed))
    # the delta expert: zero context (option 2) makes the forced steps pure targets -> masked
    policy.config.delta_zero_context_prob = 1.0

    def delta_loss(b):
        torch.manual_seed(2)
        actions = policy.normalizer.normalize("action", b["action"])
        return policy.model.delta.forward_delta_expert(policy.encode(b), actions, b["action_is_pad"],
                                                       prefix_length=b.get("prefix_length"))[0]

    assert torch.equal(delta_loss(batch), delta_loss(changed))
    batch.pop("prefix_length")
    changed.pop("prefix_length")
    assert not torch.equal(delta_loss(batch), delta_loss(changed))  # without the mask they count


def test_rtc_training_always_freezes_the_forced_prefix():
    """With rtc_training, d = max(sampled d, prefix_length): a forced action is never noised."""
    policy = tiny_policy(rtc_training=True, rtc_training_prob=0.0)  # sampled d is always 0
    batch = toy_batch(8)
    seen = {}

    def spy(obs, x_t, t, token_t):
        seen["x_t"], seen["token_t"] = x_t.detach().clone(), token_t.detach().clone()
        return torch.zeros_like(x_t)

    policy.model.velocity_net.forward = spy
    actions = policy.normalizer.normalize("action", batch["action"])
    policy.model.flow_loss(policy.encode(batch), actions, batch["action_is_pad"],
                           prefix_length=torch.tensor([2, 0, 5, 0, 0, 0, 0, 1]))
    for b, d in enumerate([2, 0, 5, 0, 0, 0, 0, 1]):
        assert torch.equal(seen["x_t"][b, :d], actions[b, :d])
        assert torch.all(seen["token_t"][b, :d] == 1.0) and torch.all(seen["token_t"][b, d:] < 1.0)
