"""The sweep report of the flow docs: pooled cells, seam table and the issue's target check."""

from __future__ import annotations

import json

from chunkwise.eval.flow_report import main, merge, seam_table, target_check


def _episode(seed: int, success: bool, seam: float) -> dict:
    return dict(seed=seed, success=success, episode_return=1.0, steps=60, steps_to_success=60 if success else None,
                stall_steps=0, inferences=6, n_seams=5, seam_discontinuity=seam, inside_discontinuity=0.1,
                jerk=0.1, mean_queue_len=5.0)


def _write(path, seeds, cells):
    rows = [{"task": "push-v3", "strategy": s, "delay": d,
             "episodes": [_episode(k, k < n_ok, seam) for k in seeds]} for (s, d), (n_ok, seam) in cells.items()]
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def test_report_pools_seed_batches_and_checks_targets(tmp_path, capsys):
    cells = {("latest_only", 0): (4, 0.2), ("latest_only", 4): (2, 0.4),
             ("rtc_guided", 0): (4, 0.1), ("rtc_guided", 4): (4, 0.2)}
    a = _write(tmp_path / "a.json", range(4), cells)
    b = _write(tmp_path / "b.json", range(4, 8), {k: (0, v[1]) for k, v in cells.items()})
    rows = merge([a, b])
    assert {len(r["episodes"]) for r in rows} == {8}
    seams = seam_table(rows)
    assert "| rtc_guided | 0.100 (0.100) | 0.200 (0.100) |" in seams
    check = target_check(rows)
    # rtc_guided: 4/8 at d=0 and 4/8 at d=4 -> kept 100 %; seam 0.2 vs 0.4 -> a cut, change -50 %
    assert "| push-v3 | rtc_guided | 0.50 | 0.50 | 100% ✓ | -50% ✓ |" in check
    assert main([f"--out={tmp_path / 'rep'}", a, b]) == 0
    assert (tmp_path / "rep.md").read_text().count("rtc_guided") == 3
    assert (tmp_path / "rep.png").stat().st_size > 0


def test_seam_table_without_inside_chunk_pairs(tmp_path):
    """g = 1 at d = 0 runs one action per chunk: no inside-chunk pairs, printed as –."""
    path = _write(tmp_path / "g1.json", range(3), {("latest_only", 0): (3, 0.1)})
    data = json.loads((tmp_path / "g1.json").read_text())
    for ep in data["rows"][0]["episodes"]:
        ep["inside_discontinuity"] = None
    (tmp_path / "g1.json").write_text(json.dumps(data))
    assert "| latest_only | 0.100 (–) |" in seam_table(merge([path]))
