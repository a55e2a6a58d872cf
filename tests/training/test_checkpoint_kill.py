"""kill -9 during a BC checkpoint save leaves ``checkpoints/last`` a complete, loadable
checkpoint whose weights, optimizer state and counters come from one save."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SAVER = r"""
import sys, torch, numpy as np
from pathlib import Path
from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.training.checkpoints import save_training_checkpoint
from chunkwise.types import FeatureSpec
torch.set_num_threads(1)
info = DatasetInfo(observation_spec={"observation.state": FeatureSpec((39,), "float32")}, action_dim=4, fps=80.0,
    stats={"observation.state": {"mean": np.zeros(39, np.float32), "std": np.ones(39, np.float32)},
           "action": {"mean": np.zeros(4, np.float32), "std": np.ones(4, np.float32)}}, task="push-v3")
cfg = ACTConfig(chunk_size=8, n_action_steps=4, dim_model=64, dim_feedforward=256, n_heads=2, latent_dim=8,
                n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1)
policy = cfg.make_policy(info)
opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
step = int(sys.argv[2])
while True:
    step += 1
    with torch.no_grad():  # weights, optimizer and counter all carry the step number
        for p in policy.parameters():
            p.fill_(float(step))
    for p in policy.parameters():
        opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": torch.full_like(p, float(step)),
                        "exp_avg_sq": torch.full_like(p, float(step))}
    save_training_checkpoint(Path(sys.argv[1]), step, policy, opt, {"seed": 0}, keep_last=2)
    print("saved", step, flush=True)
"""


def _check(run: Path) -> int:
    from safetensors.torch import load_file

    from chunkwise.policies import load
    from chunkwise.training.checkpoints import last_checkpoint

    ckpt = last_checkpoint(run)
    assert ckpt is not None
    step = json.loads((ckpt / "train_state.json").read_text())["step"]
    policy = load(ckpt)  # a complete, loadable policy
    weights = {float(p.detach().flatten()[0]) for p in policy.parameters()}
    optim = {float(t.flatten()[0]) for t in load_file(str(ckpt / "optimizer.safetensors")).values()}
    assert weights == optim == {float(step)}, (step, weights, optim)
    return int(step)


def test_kill_9_during_bc_checkpoint_saves(tmp_path):
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    last = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(run), str(last)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("saved")  # warm: at least one save done
        time.sleep(float(rng.uniform(0.0, 0.4)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        saved = [int(line.split()[1]) for line in proc.stdout.read().splitlines() if line.startswith("saved")]
        step = _check(run)
        assert step >= last + 1 and (not saved or step in (saved[-1], saved[-1] + 1)), (step, saved)
        last = step
