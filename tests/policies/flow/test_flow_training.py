"""``--policy.type=flow`` through the shared BC trainer (draccus flags, loss, checkpoint, resume)."""

from __future__ import annotations

import json

import draccus
import numpy as np
import pytest

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
