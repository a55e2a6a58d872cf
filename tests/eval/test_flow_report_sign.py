"""Seam change of the flow report: a cut is a negative change, in the report and in the docs."""

from __future__ import annotations

import re
from pathlib import Path

from chunkwise.eval.flow_report import merge, seam_change, target_check

ROOT = Path(__file__).resolve().parents[2]


def _write(path, cells):
    import json

    def ep(k, ok, seam):
        return dict(seed=k, success=ok, episode_return=1.0, steps=60, steps_to_success=60 if ok else None,
                    stall_steps=0, inferences=6, n_seams=5, seam_discontinuity=seam, inside_discontinuity=0.1,
                    jerk=0.1, mean_queue_len=5.0)

    rows = [{"task": "push-v3", "strategy": s, "delay": d, "episodes": [ep(k, True, seam) for k in range(4)]}
            for (s, d), seam in cells.items()]
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def test_a_seam_cut_is_printed_as_a_negative_change(tmp_path):
    assert round(seam_change(0.132, 0.350), 2) == -0.62  # the docs' push-v3 delta_expert row
    assert seam_change(None, 0.3) != seam_change(None, 0.3)  # NaN
    rows = merge([_write(tmp_path / "r.json", {("latest_only", 0): 0.1, ("latest_only", 4): 0.35,
                                               ("delta_expert", 0): 0.1, ("delta_expert", 4): 0.132,
                                               ("rtc_guided", 0): 0.1, ("rtc_guided", 4): 0.364})])
    check = target_check(rows)
    assert "seam change vs latest_only at d=4 (target ≤ -30%)" in check
    assert "| push-v3 | delta_expert | 1.00 | 1.00 | 100% ✓ | -62% ✓ |" in check
    assert "| push-v3 | rtc_guided | 1.00 | 1.00 | 100% ✓ | +4% ✗ |" in check


def _report_changes(name: str) -> dict[tuple[str, str], int]:
    """(task, strategy) -> seam change % in a committed docs/flow_sweep_*.md report."""
    text = (ROOT / "docs" / f"flow_sweep_{name}.md").read_text()
    assert "seam change vs latest_only at d=4 (target ≤ -30%)" in text and "seam cut" not in text
    out = {}
    for task, strategy, pct, mark in re.findall(r"^\| (\S+) \| (\S+) \| [\d.]+ \| [\d.]+ \| \d+% [✓✗] \| "
                                                r"([+-]\d+)% ([✓✗]) \|$", text, re.M):
        assert (mark == "✓") == (int(pct) <= -30), (name, strategy, pct, mark)
        out[(task, strategy)] = int(pct)
    assert len(out) == 3
    return out


def _pct(text: str) -> int:
    return int(text.replace("−", "-").replace("*", "").replace("%", "").strip())


def test_readme_and_flow_doc_quote_the_reports_with_the_same_sign():
    reports = {"push-v3": _report_changes("push_long_g05"), "pick-place-v3": _report_changes("pick_place_g05"),
               "drawer-close-v3": _report_changes("drawer_g05")}
    for name in ("push_g05", "push_g1", "pick_place_g1", "drawer_g1"):
        _report_changes(name)
    # README: | task | latest_only | rtc_guided | rtc_trained | delta_expert | target |
    readme = (ROOT / "README.md").read_text()
    n = 0
    for line in readme.splitlines():
        m = re.match(r"^\| (push-v3|pick-place-v3|drawer-close-v3)\b[^|]* \| [^|]+ \|(.*)\|[^|]*\|$", line)
        if not m or "→" not in line:
            continue
        cells = m.group(2).split("|")
        for strategy, cell in zip(("rtc_guided", "rtc_trained", "delta_expert"), cells):
            assert _pct(cell.split(",")[1]) == reports[m.group(1)][(m.group(1), strategy)], line
            n += 1
    assert n == 9
    # docs/flow.md's summary quotes the best strategy's change at g = 0.5
    flow = (ROOT / "docs" / "flow.md").read_text()
    assert "| push-v3 | 0.5 | 15000 steps | `delta_expert` | 96 % (100 % → 96 %) | −62 % (0.132 vs 0.350)" in flow
    assert reports["push-v3"][("push-v3", "delta_expert")] == -62
    assert "| pick-place-v3 | 0.5 | 5000 steps | `delta_expert` | 92 % (100 % → 92 %) | −49 %" in flow
    assert reports["pick-place-v3"][("pick-place-v3", "delta_expert")] == -49
    drawer = sorted(reports["drawer-close-v3"].values())
    assert f"| any | 100 % | −{-drawer[0]} % … +{drawer[-1]} % |" in flow
    assert "seam cut vs" not in flow
