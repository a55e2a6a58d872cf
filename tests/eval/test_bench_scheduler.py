"""Smoke test of `chunkwise bench scheduler` (the numbers themselves are a benchmark, not asserted)."""

import re

from chunkwise.cli import main as cli_main


def test_bench_scheduler_runs_and_reports_ratio(capsys):
    rc = cli_main(["bench", "scheduler", "--steps=300", "--env_steps=60", "--repeats=1",
                   "--aggregates=latest_only,temporal_ensemble"])
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"env\.step \(no cameras\):\s+[\d.]+ us/step", out)
    assert re.search(r"temporal_ensemble\s+[\d.]+ us/step\s+=\s+[\d.]+% of an env step", out)
    assert "target < 2%" in out


def test_bench_unknown_lists_valid(capsys):
    assert cli_main(["bench", "nope"]) == 2
    err = capsys.readouterr().err
    assert "valid:" in err and "scheduler" in err
