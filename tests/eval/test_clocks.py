"""chunkwise bench clocks: a served policy on the wall clock, then the virtual clock with the
measured delays (i.i.d. and replayed per episode); compared within the wall-clock CIs."""

from __future__ import annotations

import json

from chunkwise.eval.clocks import compare, format_rows, main


def _run(success, seams, steps, delays):
    from chunkwise.eval.metrics import EpisodeMetrics, summarize

    eps = [EpisodeMetrics(seed=i, success=s, episode_return=0.0, steps=50, steps_to_success=st if s else None,
                          stall_steps=0, inferences=3, n_seams=1, seam_discontinuity=sd, inside_discontinuity=0.1,
                          jerk=0.1, mean_queue_len=3.0, delays=list(delays))
           for i, (s, sd, st) in enumerate(zip(success, seams, steps))]
    return {"summary": summarize(eps), "episodes": [e.to_dict() for e in eps], "model_ms": 25.0,
            "remote": {"round_trip_ms": {"p50": 30.0}, "overrun_ticks": 0}}


def test_compare_marks_a_virtual_estimate_outside_the_wall_clock_interval():
    wall = _run([True, True, False, True], [0.5, 0.6, 0.55, 0.5], [60, 62, 0, 61], [3, 3, 4])
    same = _run([True, True, False, True], [0.5, 0.6, 0.55, 0.5], [60, 62, 0, 61], [3, 3, 4])
    off = _run([True, True, False, True], [0.9, 0.95, 0.9, 0.92], [60, 62, 0, 61], [3, 3, 4])
    row = compare(wall, same, off)
    assert row["mean_delay"] == 10 / 3 and row["delay_range"] == [3, 4]
    assert row["virtual_agrees"] == {"success": True, "seam_discontinuity": True, "steps_to_success": True}
    assert row["replay_agrees"]["seam_discontinuity"] is False
    table = format_rows([row], "t")
    assert "| 25 | wall (rtt p50 30 ms) | 3.33 (3–4) | 75% [30, 95] |" in table
    assert "virtual, replayed delays" in table and "0.917 [" in table and " ✗ |" in table


def test_bench_clocks_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "clocks"
    args = ["--env.task=reach-v3", "--env.max_episode_steps=40", "--strategy=latest_only", "--model_ms=10",
            "--n_episodes=2", "--actions_per_chunk=10", "--time_scale=2", "--progress=false", f"--output_dir={out}"]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "replay_10.json", "results.json", "table.md", "virtual_10.json", "wall_10.json"]
    wall = json.loads((out / "wall_10.json").read_text())
    replay = json.loads((out / "replay_10.json").read_text())
    assert replay["replay"] is True and sum(wall["summary"]["delay_counts"].values()) >= 2
    assert "| 10 | wall" in capsys.readouterr().out
    mtime = (out / "wall_10.json").stat().st_mtime
    assert main(args) == 0 and (out / "wall_10.json").stat().st_mtime == mtime  # finished cells are kept
