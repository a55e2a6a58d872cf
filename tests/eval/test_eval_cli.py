import csv
import json
import re

import pytest

from chunkwise.eval import run as eval_run
from chunkwise.eval import sweep as eval_sweep
from chunkwise.eval.rollouts import EpisodeJob, PolicySource, iter_jobs
from chunkwise.runtime import ExecutionConfig
from chunkwise.scheduling import FixedDelay


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--aggregate_fn_name=median"], "valid: average, conservative, latest_only"),
        (["--strategy=fast"], "unknown strategy 'fast'; valid: async, average, conservative, .*sync"),
        (["--chunk_size_threshold=1.5"], r"chunk_size_threshold must be in \[0, 1\]"),
        (["--actions_per_chunk=60", "--policy.chunk_size=50"], "actions_per_chunk=60 > chunk size 50"),
        (["--inference_delay=-1"], "inference_delay must be >= 0"),
        (["--n_episodes=0"], "n_episodes must be positive"),
        (["--env.task=push-v9"], "push-v9"),
    ],
)
def test_eval_validation_before_any_env(argv, match, monkeypatch, capsys):
    from chunkwise.envs.base import EnvConfig

    made = []
    cls = EnvConfig.get_choice_class("metaworld")
    monkeypatch.setattr(cls, "make", lambda self: made.append(self))
    assert eval_run.main(argv) == 2
    assert made == []
    err = capsys.readouterr().err
    assert err.startswith("chunkwise eval: error: ") and re.search(match, err), err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--strategies=sync,rtc_magic"], "unknown strategy 'rtc_magic'"),
        (["--delays=0,-2"], "inference delay must be >= 0"),
        (["--delays=0,x"], "comma-separated integers"),
        (["--tasks=push-v3,push-v3"], "duplicates"),
    ],
)
def test_sweep_validation(argv, match, capsys):
    assert eval_sweep.main(argv) == 2
    assert re.search(match, capsys.readouterr().err)


def test_a_correction_head_no_strategy_uses_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")  # a head dir as far as the flag's check goes
    head = f"--correction.path={tmp_path}"
    assert eval_sweep.main(["--strategies=latest_only,delta_expert", head]) == 2
    assert "no strategy uses it: name <base>+correction" in capsys.readouterr().err
    assert eval_run.main(["--strategy=latest_only", head]) == 2
    assert "got latest_only" in capsys.readouterr().err


def test_checkpoint_mismatch_is_reported_before_episodes(tmp_path, monkeypatch, capsys):
    import numpy as np

    from chunkwise import policies
    from chunkwise.types import FeatureSpec, PolicyMetadata

    class Wrong:
        metadata = PolicyMetadata({"observation.state": FeatureSpec((7,), "float32")}, 4, 50, 80.0, "fake")

        def predict_chunk(self, obs, prefix=None):
            return np.zeros((1, 50, 4), np.float32)

        def reset(self):
            pass

    monkeypatch.setattr(policies, "load", lambda path: Wrong())
    assert eval_run.main([f"--policy.path={tmp_path}", "--n_episodes=1"]) == 2
    err = capsys.readouterr().err
    assert "observation key 'observation.state': policy expects (7,) float32, env gives (39,) float32" in err


def test_eval_cli_real_metaworld(tmp_path, capsys):
    rc = eval_run.main(["--env.task=drawer-close-v3", "--n_episodes=2", "--inference_delay=2",
                        "--strategy=latest_only", f"--output_dir={tmp_path}"])
    assert rc == 0
    out = json.loads((tmp_path / "eval.json").read_text())
    s = out["summary"]
    assert s["n_episodes"] == 2 and s["success_rate"] == 1.0
    assert out["execution"]["aggregate_fn_name"] == "latest_only" and out["delay_steps"] == 2
    assert [e["seed"] for e in out["episodes"]] == [0, 1]
    assert all(e["stall_steps"] == 2 for e in out["episodes"])  # only the first chunk's wait
    assert "success rate       1.000" in capsys.readouterr().out


def test_eval_delay_from_ms():
    cfg = eval_run.EvalConfig(inference_delay_ms=30.0)  # 80 fps: 12.5 ms/step -> ceil(2.4) = 3
    assert cfg.delay_steps == 3


def test_sweep_writes_files_and_orders_rows(tmp_path, capsys):
    rc = eval_sweep.main(["--tasks=drawer-close-v3", "--delays=0,4", "--strategies=sync,average",
                          "--n_episodes=1", "--n_workers=1", "--policy.chunk_size=30",
                          "--actions_per_chunk=30", f"--output_dir={tmp_path}"])
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["strategy"], r["delay"]) for r in rows] == [("sync", "0"), ("sync", "4"), ("average", "0"), ("average", "4")]
    assert all(r["success_rate"] == "1" for r in rows)
    # sync waits d idle steps per chunk: slower to succeed than at d = 0
    assert float(rows[1]["steps_to_success"]) > float(rows[0]["steps_to_success"])
    assert float(rows[1]["stall_steps"]) >= 8
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert "| sync" in capsys.readouterr().out


def test_process_pool_results_match_inline_and_keep_order():
    from chunkwise.envs import MetaWorldEnvConfig

    env = MetaWorldEnvConfig(task="drawer-close-v3")
    ex = ExecutionConfig(aggregate_fn_name="conservative", actions_per_chunk=20)
    jobs = [EpisodeJob(env, PolicySource(chunk_size=20), ex, FixedDelay(d), seed) for d, seed in [(3, 5), (0, 6), (1, 7)]]
    inline = list(iter_jobs(jobs, 1))
    pooled = list(iter_jobs(jobs, 2))
    assert [m.to_dict() for m in inline] == [m.to_dict() for m in pooled]
    assert [m.seed for m in pooled] == [5, 6, 7]


def test_actions_per_chunk_defaults_to_the_checkpoints_chunk_size(tmp_path, monkeypatch, capsys):
    """The documented `chunkwise eval --policy.path=<chunk-20 checkpoint>` needs no
    --actions_per_chunk; one that is too large is a one-line error naming the fix."""
    import numpy as np

    from chunkwise import policies
    from chunkwise.types import FeatureSpec, PolicyMetadata

    class Hold:
        metadata = PolicyMetadata({"observation.state": FeatureSpec((39,), "float32")}, 4, 20, 80.0, "fake")

        def predict_chunk(self, obs, prefix=None):
            return np.zeros((len(obs["observation.state"]), 20, 4), np.float32)

        def reset(self):
            pass

    monkeypatch.setattr(policies, "load", lambda path: Hold())
    rc = eval_run.main([f"--policy.path={tmp_path}", "--env.task=reach-v3", "--env.max_episode_steps=30",
                        "--n_episodes=1", f"--output_dir={tmp_path / 'out'}"])
    assert rc == 0
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["execution"]["actions_per_chunk"] == 20
    assert eval_run.main([f"--policy.path={tmp_path}", "--n_episodes=1", "--actions_per_chunk=50"]) == 2
    err = capsys.readouterr().err
    assert "--actions_per_chunk=50 > the policy's chunk size 20" in err and "Traceback" not in err
