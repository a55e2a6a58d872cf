"""``chunkwise rl`` end to end on real MetaWorld episodes: outputs, resume, learning."""

from __future__ import annotations

import json
import os
import shutil
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
    # checkpoints/best names the first evaluation with the highest success, across the resume
    evals = [r for r in rows2 if r["kind"] == "eval"]
    top = next(r for r in evals if r["success_rate"] == max(e["success_rate"] for e in evals))
    assert os.readlink(out / "checkpoints" / "best") == f"step_{top['env_steps']:09d}"
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()

    # the comparison report reads the same files
    from chunkwise.rl.report import load_run, table
    from chunkwise.rl.report import main as report_main

    assert report_main([str(out), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    assert table([load_run(out)]).splitlines()[2].startswith("| mlp+chunk H=5 (seed 0) |")


def test_cli_rejects_bad_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:  # a Literal flag: argparse's usage error
        main(["--actor=transformer", f"--output_dir={tmp_path}"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["--online_steps=-1", f"--output_dir={tmp_path}"]) == 2  # __post_init__: one line, no traceback
    err = capsys.readouterr().err.strip()
    assert err == "chunkwise rl: error: online_steps must be >= 0, got -1", err


def _timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def test_existing_output_dir_needs_resume_or_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [*TINY, "--online_steps=30", f"--output_dir={out}"]
    assert main(args) == 0
    before = (out / "metrics.jsonl").read_text()
    last = os.readlink(out / "checkpoints" / "last")
    capsys.readouterr()

    assert main(args) == 2  # a rerun must not replace the previous run silently
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume=true" in err and "--overwrite=true" in err, err
    assert (out / "metrics.jsonl").read_text() == before and os.readlink(out / "checkpoints" / "last") == last

    assert main([*args, "--resume=true", "--overwrite=true"]) == 2
    assert "contradict" in capsys.readouterr().err

    (out / "notes.txt").write_text("kept")
    assert main([*args, "--overwrite=true", "--seed=1"]) == 0  # a fresh run: old checkpoints gone
    assert (out / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best", "last", "step_000000000", "step_000000030"]
    assert [r["kind"] for r in _lines(out / "metrics.jsonl")].count("init") == 1
    assert json.loads((out / "checkpoints" / "last" / "config.json").read_text())["config"]["seed"] == 1

    empty = tmp_path / "empty"
    empty.mkdir()  # an existing empty directory is fine
    assert main([*TINY, "--online_steps=30", f"--output_dir={empty}"]) == 0


def test_resume_after_a_crash_drops_the_lines_logged_after_the_checkpoint(tmp_path: Path) -> None:
    """Killed after logging up to step 60 but before its checkpoint: resuming from the
    step-30 checkpoint must not log steps 31..60 twice; it reproduces the same lines."""
    out = tmp_path / "run"
    args = [*TINY, "--online_steps=60", f"--output_dir={out}"]
    assert main(args) == 0
    reference = _lines(out / "metrics.jsonl")
    ck = out / "checkpoints"
    # the state a crash just before the step-60 save leaves: last -> step 30, a torn line
    os.unlink(ck / "last")
    os.symlink("step_000000030", ck / "last")
    shutil.rmtree(ck / "step_000000060")
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "episode", "env_st')
    assert main([*args, "--resume=true"]) == 0
    rows = _lines(out / "metrics.jsonl")
    keys = [(r["kind"], r.get("env_steps"), r.get("episode"), r.get("updates")) for r in rows]
    assert len(keys) == len(set(keys)), "a metrics line was logged twice"
    assert _timeless(rows) == _timeless(reference)  # same seeds, replay, RNG: the same continuation


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


def test_ibrl_run_logs_the_reference_share_and_resumes_with_its_reference(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ibrl"
    args = [*TINY, "--reference_policy=bc", "--init.bc_warmstart_steps=5", f"--output_dir={out}"]
    assert main([*args, "--online_steps=60"]) == 0
    assert main([*args, "--online_steps=90", "--resume=true"]) == 0
    rows = _lines(out / "metrics.jsonl")
    episodes = [r for r in rows if r["kind"] == "episode"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["env_steps"] for r in evals] == [0, 30, 60, 90]
    assert all(0.0 <= r["reference_share"] <= 1.0 for r in episodes + evals)
    from chunkwise.policies import load

    policy = load(out)
    assert policy.proposal is not None  # the deployed checkpoint chooses like the evaluation
    assert policy.metadata.extra["idle_action"] == [0.0, 0.0, 0.0, -1.0]  # MetaWorld after a reset
    capsys.readouterr()
    assert main([*TINY, "--reference_policy=bc", "--online_steps=30", f"--output_dir={tmp_path / 'x'}"]) == 2
    assert "--init.bc_warmstart_steps" in capsys.readouterr().err
