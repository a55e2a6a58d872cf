"""``chunkwise rl --backend=ray --n_actors=2``: two Ray rollout actors feed one learner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chunkwise.rl.train import main

TINY = [
    "--env.type=metaworld", "--env.task=reach-v3", "--env.max_episode_steps=30",
    "--actor=mlp", "--actor_net.hidden_dims=[32]", "--critic_net.hidden_dims=[32,32]",
    "--chunk_size=5", "--batch_size=16", "--demos.scripted_episodes=2",
    "--eval_every=300", "--eval_episodes=2", "--save_every=300", "--log_every=10", "--progress=false",
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rl_on_ray_with_two_actors_feeds_one_learner(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "run"
    assert main([*TINY, "--online_steps=300", "--backend=ray", "--n_actors=2", "--weight_sync_every=20",
                 "--ray.num_cpus=2", f"--output_dir={out}"]) == 0
    rows = _lines(out / "metrics.jsonl")
    episodes = [r for r in rows if r["kind"] == "episode"]
    assert {r["actor"] for r in episodes} == {0, 1}  # transitions from both actors reached the learner
    seeds = [r["seed"] for r in episodes]
    assert len(set(seeds)) == len(seeds) and min(seeds) == 0  # seed * 10_000 + k: no actor repeats one
    assert sum(r["length"] for r in episodes) == episodes[-1]["env_steps"] >= 300
    assert any(r["weights_version"] > 0 for r in episodes)  # later episodes ran with broadcast weights
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(evals) >= 2 and all(e["n_episodes"] == 2 for e in evals)
    tp = [r for r in rows if r["kind"] == "throughput"]
    assert tp and tp[-1]["learner_updates_per_s"] > 0 and min(tp[-1]["env_steps_per_actor"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_actors"] == 2 and summary["updates"] == summary["env_steps"]  # utd_ratio = 1
    assert len(summary["actor_env_steps_per_s"]) == 2 and summary["env_steps_per_s"] > 0
    assert (out / "checkpoints" / "last" / "model.safetensors").is_file()
    # the Ray loop moves checkpoints/best as the local loop does: to the first top evaluation
    top = max(evals, key=lambda e: e["success_rate"])
    assert os.readlink(out / "checkpoints" / "best") == f"step_{top['env_steps']:09d}"
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()


def test_n_actors_needs_the_ray_backend(tmp_path: Path, capsys) -> None:
    assert main([*TINY, "--n_actors=2", f"--output_dir={tmp_path / 'x'}"]) == 2
    assert "--n_actors > 1 needs --backend=ray" in capsys.readouterr().err
