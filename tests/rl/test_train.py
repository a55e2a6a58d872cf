"""``chunkwise rl`` end to end on real MetaWorld episodes: outputs, resume, learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from chunkwise.rl.train import RLConfig, RLTrainer, main

TINY = [
    "--env.type=metaworld", "--env.task=reach-v3", "--env.max_episode_steps=30",
    "--actor=mlp", "--actor_net.hidden_dims=[32]", "--critic_net.hidden_dims=[32,32]",
    "--chunk_size=5", "--batch_size=16", "--demos.scripted_episodes=2",
    "--eval_every=30", "--eval_episodes=2", "--save_every=30", "--log_every=10", "--progress=false",
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_run_writes_outputs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TINY, "--online_steps=60", f"--output_dir={out}"]) == 0
    rows = _lines(out / "metrics.jsonl")
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "init" and kinds.count("eval") >= 2 and "train" in kinds and "episode" in kinds
    assert rows[0]["demo_episodes"] == 2
    assert (out / "learning_curve.png").stat().st_size > 1000
    ck = out / "checkpoints" / "last"
    state = json.loads((ck / "train_state.json").read_text())
    assert state["env_steps"] >= 60 and state["updates"] == state["env_steps"]  # utd_ratio = 1
    assert json.loads((ck / "config.json").read_text())["config"]["actor"] == "mlp"
    learner = load_file(str(ck / "learner.safetensors"))
    assert "log_alpha" in learner and any(k.startswith("critic_target.") for k in learner)
    assert set(load_file(str(ck / "model.safetensors"))) == {k[len("actor."):] for k in learner if k.startswith("actor.")}

    # resume: counters continue, init is not re-run, old metrics are kept
    assert main([*TINY, "--online_steps=120", f"--output_dir={out}", "--resume=true"]) == 0
    rows2 = _lines(out / "metrics.jsonl")
    assert rows2[: len(rows)] == rows
    new = rows2[len(rows):]
    assert all(r["kind"] != "init" for r in new)
    episodes = [r for r in new if r["kind"] == "episode"]
    assert episodes[0]["episode"] == state["episodes"] + 1
    assert episodes[0]["env_steps"] > state["env_steps"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 120 and summary["updates"] == summary["env_steps"]

    # the comparison report reads the same files
    from chunkwise.rl.report import load_run, table
    from chunkwise.rl.report import main as report_main

    assert report_main([str(out), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    assert table([load_run(out)]).splitlines()[2].startswith("| mlp+chunk H=5 (seed 0) |")


def test_cli_rejects_bad_choices(tmp_path: Path) -> None:
    with pytest.raises((ValueError, SystemExit)):
        main(["--actor=transformer", f"--output_dir={tmp_path}"])


def test_short_run_on_reach_improves_success_over_init(tmp_path: Path) -> None:
    """From a random actor (0% success) to >= 20% in 600 env steps.

    The act actor starts random; the replay mixes 5 scripted demonstrations with online
    chunks and the actor loss carries the (NLL) BC term, so success must rise. Evaluation
    is deterministic (tanh of the mean) on 10 fixed seeds.
    """
    import draccus

    cfg = draccus.parse(RLConfig, args=[
        "--env.task=reach-v3", "--env.max_episode_steps=100", "--actor=act", "--critic=chunk",
        "--actor_net.dim_model=32", "--actor_net.dim_feedforward=64", "--critic_net.hidden_dims=[64,64]",
        "--batch_size=64", "--demos.scripted_episodes=5", "--online_steps=600", "--eval_every=600",
        "--eval_episodes=10", "--bc_weight=10", "--seed=0", "--progress=false", f"--output_dir={tmp_path}",
    ])
    trainer = RLTrainer(cfg)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["initial_success"] == 0.0
    assert summary["final_success"] >= 0.2, summary
