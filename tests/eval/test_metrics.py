import math

import numpy as np
import pytest

from chunkwise.eval.metrics import episode_metrics, mean_ci, summarize, t_quantile_975, wilson_interval
from chunkwise.runtime.virtual_clock import Rollout, StepTrace


def make_rollout(actions, stall, seam, success_at=None):
    n = len(actions)
    tr = StepTrace(
        actions=np.asarray(actions, np.float32), stall=np.asarray(stall, bool), seam=np.asarray(seam, bool),
        queue_len=np.arange(n), request=np.zeros(n, bool), delay=np.full(n, -1), chunk=np.zeros(n, int),
        reward=np.ones(n), success=np.zeros(n, bool),
    )
    return Rollout(seed=1, success=success_at is not None, steps=n, steps_to_success=success_at,
                   episode_return=float(n), inferences=2, stall_steps=int(np.sum(stall)), trace=tr)


def test_seam_inside_and_jerk_by_hand():
    # 1-D actions; step 0 is a stall (idle 0), seam at step 3
    acts = [[0.0], [1.0], [2.0], [5.0], [6.0]]
    m = episode_metrics(make_rollout(acts, [1, 0, 0, 0, 0], [0, 0, 0, 1, 0], success_at=5))
    # diffs between policy steps: 1->2 (inside, 1), 2->3 (seam, 3), 3->4 (inside, 1); 0->1 involves a stall
    assert m.seam_discontinuity == pytest.approx(3.0)
    assert m.inside_discontinuity == pytest.approx(1.0)
    # jerk |a_t - 2a_{t-1} + a_{t-2}| for t=2..4: |2-2+0|=0, |5-4+1|=2, |6-10+2|=2 -> mean 4/3
    assert m.jerk == pytest.approx(4 / 3)
    assert (m.n_seams, m.stall_steps, m.steps_to_success, m.success) == (1, 1, 5, True)
    assert m.mean_queue_len == pytest.approx(2.0)


def test_no_seams_gives_none():
    m = episode_metrics(make_rollout([[0.0], [1.0]], [0, 0], [0, 0]))
    assert m.seam_discontinuity is None and m.inside_discontinuity == 1.0 and m.jerk is None


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)  # textbook: 0.490 .. 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0714, abs=1e-3)
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(0.9286, abs=1e-3)


def test_mean_ci_student_t():
    r = mean_ci([1.0, 2.0, 3.0, None, float("nan")])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert r["n"] == 3 and r["mean"] == 2.0
    assert r["ci_low"] == pytest.approx(2 - half) and r["ci_high"] == pytest.approx(2 + half)
    assert mean_ci([])["mean"] is None
    assert t_quantile_975(1000) == pytest.approx(1.9623, abs=1e-3)
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=2e-3)


def test_summarize_counts_success_only_for_steps():
    a = episode_metrics(make_rollout([[0.0], [1.0], [2.0]], [0, 0, 0], [0, 0, 0], success_at=3))
    b = episode_metrics(make_rollout([[0.0], [1.0], [2.0]], [0, 0, 0], [0, 0, 0]))
    s = summarize([a, b])
    assert s["success_rate"] == 0.5 and s["n_episodes"] == 2
    assert s["steps_to_success"]["n"] == 1 and s["steps_to_success"]["mean"] == 3
    assert s["steps"]["mean"] == 3


def test_combine_merges_seed_splits(tmp_path):
    import json

    from chunkwise.eval.metrics import EpisodeMetrics
    from chunkwise.eval.report import combine

    def ep(seed, success):
        return EpisodeMetrics(seed, success, 1.0, 10, 10 if success else None, 0, 1, 0, None, 0.1, 0.2, 1.0).to_dict()

    for name, seeds in [("a", [0, 1]), ("b", [2])]:
        (tmp_path / name).mkdir()
        rows = [{"task": "t", "strategy": "sync", "delay": 0, "summary": {}, "episodes": [ep(s, s != 1) for s in seeds]}]
        (tmp_path / name / "results.json").write_text(json.dumps({"rows": rows}))
    rows = combine([str(tmp_path / "a"), str(tmp_path / "b")])
    assert len(rows) == 1 and rows[0]["summary"]["n_episodes"] == 3
    assert rows[0]["summary"]["success_rate"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="duplicate episode seeds"):
        combine([str(tmp_path / "a"), str(tmp_path / "a")])
