"""One CLI behaviour: every bad flag is one line naming it, exit status 2, no traceback."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from chunkwise.common.cli import parse_cli


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--steps=abc", "--dataset.root=x"], "chunkwise train: error: --steps: Couldn't parse 'abc' into an int"),
        (["train"], "chunkwise train: error: --dataset.root is required"),
        (["eval", "--n_episodes=x"], "chunkwise eval: error: --n_episodes: Couldn't parse 'x' into an int"),
        (["eval", "--strategy=fast"], "chunkwise eval: error: unknown strategy 'fast'; valid: async"),
        (["demo", "--n_episodes=x"], "chunkwise demo: error: --n_episodes: Couldn't parse 'x' into an int"),
        (["bench", "scheduler", "--steps=0"], "chunkwise bench scheduler: error: steps, env_steps and repeats must be positive"),
        (["bench", "clocks", "--model_ms=a,b"], "chunkwise bench clocks: error: --model_ms must be comma-separated"),
    ],
)
def test_bad_flag_is_one_line_exit_2(argv, expected):
    r = subprocess.run([sys.executable, "-m", "chunkwise.cli", *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(err) == 1 and err[0].startswith(expected), r.stderr


@pytest.mark.parametrize("command", [["eval"], ["sweep"], ["train"], ["bench", "clocks"]])
def test_help_shows_every_default_once(command):
    r = subprocess.run([sys.executable, "-m", "chunkwise.cli", *command, "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: chunkwise {' '.join(command)} ")
    # each group (a config class; an env type is one group per choice) lists a flag once
    for section in re.split(r"\n(?=\S)", r.stdout):
        flags = [ln.split()[0] for ln in section.splitlines() if ln.startswith("  --")]
        assert len(flags) == len(set(flags)), f"a flag is listed twice in {section[:40]!r}"
    assert "Config file for" not in r.stdout
    body = r.stdout[r.stdout.index("options:"):]
    # every flag line (or its continuation) carries its default
    blocks = re.split(r"\n  (?=--)", body)[1:]
    missing = [b.split()[0] for b in blocks if "(default:" not in b and not b.startswith("--help")]
    assert not missing, f"flags without a default in --help: {missing}"


def test_eval_and_sweep_refuse_to_overwrite_results(tmp_path):
    out = tmp_path / "run"
    base = ["--env.task=reach-v3", "--env.max_episode_steps=5", "--n_episodes=1", f"--output_dir={out}"]
    for cmd in (["eval"], ["sweep", "--delays=0", "--strategies=sync", "--n_workers=1", "--plot=false"]):
        run = lambda *extra: subprocess.run([sys.executable, "-m", "chunkwise.cli", *cmd, *base, *extra],  # noqa: E731
                                            capture_output=True, text=True, timeout=300)
        assert run().returncode == 0
        assert (out / "config.json").is_file()
        r = run()
        assert r.returncode == 2 and "already holds results; pass --overwrite=true" in r.stderr, r.stderr
        assert run("--overwrite=true").returncode == 0
        import shutil

        shutil.rmtree(out)


@pytest.mark.parametrize("typed", ["0123", "0x1F", "yes", "12:30", "@x", "*alias", "it's", "[::1]", "null"])
def test_string_flags_are_taken_as_typed(typed):
    from chunkwise.eval.run import EvalConfig

    cfg = parse_cli(EvalConfig, ["--server=127.0.0.1:1", f"--token={typed}"], "eval")
    assert cfg.token == typed and cfg.server == "127.0.0.1:1"
    assert parse_cli(EvalConfig, ["--token", typed], "eval").token == typed


def test_an_optional_string_flag_still_takes_none():
    from chunkwise.eval.run import EvalConfig

    assert parse_cli(EvalConfig, ["--server=null"], "eval").server is None


def test_an_incompatible_strategy_is_one_line_not_a_traceback(capsys):
    from chunkwise.eval.run import main

    assert main(["--policy.type=scripted", "--strategy=rtc_guided", "--n_episodes=1", "--env.max_episode_steps=5",
                 "--n_workers=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("chunkwise eval: error: strategy 'rtc_guided' needs a policy with prefix mode")
