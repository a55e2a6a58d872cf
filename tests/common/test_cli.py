"""One CLI behaviour: every bad flag is one line naming it, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


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
