"""BC training: exact resume, NaN stop, checkpoint files, bad input, and a real end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.registry import load
from chunkwise.training.checkpoints import last_checkpoint
from chunkwise.training.train import DatasetConfig, TrainConfig, main, run_training
from chunkwise.training.trainer import NonFiniteLossError, batch_indices, lr_at

S, A, H = 5, 3, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SyntheticDataset:
    """ChunkDataset look-alike: actions are a fixed function of the state (learnable)."""

    def __init__(self, n: int = 48, nan_from_step_sample: int | None = None, drop: str | None = None) -> None:
        rng = np.random.default_rng(0)
        self.state = rng.normal(size=(n, S)).astype(np.float32)
        w = rng.normal(size=(S, A)).astype(np.float32)
        self.action = np.tanh(self.state @ w)[:, None, :] + 0.1 * np.arange(H, dtype=np.float32)[None, :, None]
        self.poison = False
        self.drop = drop
        self.fps = 10.0
        self.stats = {
            "observation.state": {"mean": self.state.mean(0), "std": self.state.std(0)},
            "action": {"mean": self.action.mean((0, 1)), "std": self.action.std((0, 1))},
        }

    def __len__(self) -> int:
        return len(self.state)

    def get_batch(self, idx):
        idx = np.asarray(idx)
        out = {
            "observation.state": self.state[idx],
            "action": self.action[idx].copy(),
            "action_is_pad": np.zeros((len(idx), H), bool),
            "task": ["synthetic"] * len(idx),
        }
        if self.poison:
            out["action"][:] = np.nan
        if self.drop:
            del out[self.drop]
        return out

    def __getitem__(self, i):
        return {k: (v[0] if k != "task" else v[0]) for k, v in self.get_batch([i]).items()}


def config(out: Path, steps: int, **kw) -> TrainConfig:
    policy = ACTConfig(chunk_size=H, dim_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
                       n_vae_encoder_layers=1, dim_feedforward=64, latent_dim=8, warmup_steps=5, lr=3e-3)
    base = dict(policy=policy, dataset=DatasetConfig(root="synthetic"), output_dir=str(out), steps=steps,
                batch_size=8, log_every=1, save_every=10, num_threads=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def losses(out: Path) -> list[tuple[int, float]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_resume_reproduces_an_uninterrupted_run(tmp_path) -> None:
    ds = SyntheticDataset()
    run_training(config(tmp_path / "full", 20), ds)

    # The same run, killed during step 13 (after the step-10 checkpoint), then resumed.
    killed = SyntheticDataset()
    original, calls = killed.get_batch, {"n": 0}

    def get_batch(idx):
        calls["n"] += 1  # call 1 is the dataset probe, call k+1 is step k
        if calls["n"] == 14:
            raise KeyboardInterrupt
        return original(idx)

    killed.get_batch = get_batch  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run_training(config(tmp_path / "split", 20), killed)
    assert last_checkpoint(tmp_path / "split").name == "step_0000010"
    run_training(config(tmp_path / "split", 20, resume=True), ds)
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert [s for s, _ in split] == list(range(1, 21))  # one record per step, no duplicates
    np.testing.assert_allclose([v for _, v in split], [v for _, v in full], rtol=1e-5, atol=1e-6)
    assert full[-1][1] < full[0][1]  # it learns
    obs = {"observation.state": ds.state[:3]}
    a = load(tmp_path / "full" / "checkpoints" / "last").predict_chunk(obs)
    b = load(tmp_path / "split" / "checkpoints" / "last").predict_chunk(obs)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_layout_has_no_pickle(tmp_path) -> None:
    run_training(config(tmp_path, 10), SyntheticDataset())
    ckpt = last_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_0000010"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.safetensors", "stats.safetensors", "train_state.json"]
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["type"] == "act" and cfg["metadata"]["chunk_size"] == H and cfg["metadata"]["action_dim"] == A
    state = json.loads((ckpt / "train_state.json").read_text())
    assert state["step"] == 10 and state["seed"] == 0
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp leftovers
    with pytest.raises(FileExistsError, match="resume"):
        run_training(config(tmp_path, 20), SyntheticDataset())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    ds = SyntheticDataset()
    cfg = config(tmp_path, 30)

    original = ds.get_batch
    calls = {"n": 0}

    def get_batch(idx):
        calls["n"] += 1
        ds.poison = calls["n"] > 14  # call 1 is the dataset probe, call k+1 is step k
        return original(idx)

    ds.get_batch = get_batch  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError, match="step 14"):
        run_training(cfg, ds)
    ckpt = last_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_0000010"
    assert np.isfinite(load(ckpt).predict_chunk({"observation.state": ds.state[:1]})).all()


def test_missing_dataset_key_is_named(tmp_path) -> None:
    with pytest.raises(KeyError, match="action_is_pad"):
        run_training(config(tmp_path, 5), SyntheticDataset(drop="action_is_pad"))
    with pytest.raises(KeyError, match="observation.state"):
        run_training(config(tmp_path, 5), SyntheticDataset(drop="observation.state"))


def test_schedule_and_sampling_depend_only_on_seed_and_step() -> None:
    np.testing.assert_array_equal(batch_indices(3, 17, 100, 8), batch_indices(3, 17, 100, 8))
    assert not np.array_equal(batch_indices(3, 17, 100, 8), batch_indices(3, 18, 100, 8))
    assert lr_at(5, 1.0, 10, 100, 0.1) == pytest.approx(0.5)
    assert lr_at(10, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)


def test_cli_collect_train_eval_end_to_end(tmp_path, capsys) -> None:
    """Real MetaWorld demos -> `chunkwise train` with in-training eval -> loadable checkpoint."""
    from chunkwise.data.collect import main as collect
    from chunkwise.envs import MetaWorldEnvConfig
    from chunkwise.policies.common.compat import IncompatiblePolicyError, check_compatible
    from chunkwise.training.rollout import evaluate_sync

    data = tmp_path / "data"
    assert collect(["--env.task=push-v3", "--n_episodes=2", f"--output_dir={data}", "--progress=false"]) == 0
    out = tmp_path / "run"
    argv = [
        "--policy.type=act", f"--dataset.root={data}", "--steps=6", "--batch_size=8", f"--output_dir={out}",
        "--policy.chunk_size=8", "--policy.n_action_steps=4", "--policy.dim_model=32", "--policy.n_heads=2",
        "--policy.dim_feedforward=64", "--policy.action_groups={xyz: [0, 3], gripper: [3, 4]}",
        "--log_every=2", "--save_every=3", "--eval_every=6", "--eval_episodes=1",
        "--env.type=metaworld", "--env.task=push-v3", "--env.max_episode_steps=12", "--progress=false",
    ]
    assert main(argv) == 0
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_rec = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_rec] == [2, 4, 6]
    assert {"l1", "kl", "lr", "grad_norm", "samples_per_s"} <= set(train_rec[0])
    assert [r["eval/success_rate"] for r in records if "eval/success_rate" in r] in ([0.0], [1.0])
    policy = load(out / "checkpoints" / "last")
    env = MetaWorldEnvConfig(task="push-v3", max_episode_steps=12).make()
    try:
        check_compatible(policy.metadata, env)
        obs = env.reset(seed=0)
        chunk = policy.predict_chunk({k: np.asarray(v)[None] for k, v in obs.items() if k != "task"})
        assert chunk.shape == (1, 8, 4)
    finally:
        env.close()
    # a policy whose action dim differs from the env's fails before any episode is run
    from dataclasses import replace

    policy._metadata = replace(policy.metadata, action_dim=3)
    with pytest.raises(IncompatiblePolicyError, match="action_dim"):
        evaluate_sync(policy, MetaWorldEnvConfig(task="push-v3"), n_episodes=1, n_action_steps=4)
    # bad input through the CLI: a clear message, non-zero exit
    assert main(["--dataset.root=/nonexistent/ds", f"--output_dir={tmp_path / 'x'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_in_training_eval_matches_the_runtime_executor(metaworld_info) -> None:
    """evaluate_sync (VirtualClockExecutor, sync, d=0) == the fallback loop, step for step."""
    from chunkwise.envs import MetaWorldEnvConfig
    from chunkwise.training.rollout import evaluate_loop, evaluate_sync


    policy = config(Path("unused"), 1).policy
    info = metaworld_info(task=None)
    torch.manual_seed(0)
    act = policy.make_policy(info)
    env_cfg = MetaWorldEnvConfig(task="reach-v3", max_episode_steps=30)
    a = evaluate_sync(act, env_cfg, n_episodes=2, n_action_steps=3)
    env = env_cfg.make()
    try:
        b = evaluate_loop(act, env, 2, 3, seed_offset=100_000)
    finally:
        env.close()
    assert (a.success_rate, a.mean_steps) == (b.success_rate, b.mean_steps) and a.mean_steps == 30
    assert a.mean_return == pytest.approx(b.mean_return, rel=1e-6)
