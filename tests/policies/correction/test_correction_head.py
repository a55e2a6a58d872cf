"""Correction head: its training target on a hand-made stale plan, the forward pass, files."""

from __future__ import annotations

import numpy as np
import pytest

from chunkwise.policies.correction.head import CorrectionConfig, CorrectionHead, correction_targets, features
from chunkwise.eval.correction_train import Recorder
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import ChunkController, StepContext


class ExpertAt:
    """The 'expert' walks the state to the origin: a*(s) = clip(-s[:2], -1, 1)."""

    def expert_action(self, obs):
        return np.clip(-np.asarray(obs["observation.state"][:2], np.float32), -1, 1)


def test_training_target_on_a_hand_made_stale_plan():
    """H = 6, g = 0.5, d = 2: c0 is asked for at t = 0 (state s0) and merges at t = 2.

    The plan says 'move +x' for every step; by t = 2..4 the state has moved, and the row
    for step t must be [s_t, c0[t], t/6, t/6] with target a*(s_t) - c0[t].
    """
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=6,
                          chunk_size_threshold=0.5, prefix=False)
    rec = Recorder(ExpertAt(), horizon=6)
    ctl = ChunkController(cfg, 2, lambda: np.zeros(2, np.float32), step_hook=rec)
    plan = np.tile(np.array([[0.5, 0.0]], np.float32), (6, 1)) * np.arange(1, 7, dtype=np.float32)[:, None] / 6
    states = []
    x = np.array([1.0, -0.4], np.float32)
    for t in range(5):
        if t == 2:
            assert ctl.arrive(1, plan, t)
        obs = {"observation.state": x.copy()}
        if t == 0:
            assert ctl.wants_request(obs, t)
            ctl.request(obs, t, 2)
        a = ctl.execute(t, obs)
        if t >= 2:
            states.append(x.copy())
            np.testing.assert_array_equal(a, plan[t])  # the recorder does not change the action
        x = x + 0.1 * a
    assert len(rec.x) == 3  # the two stall steps have no base action and are not labelled
    for k, t in enumerate((2, 3, 4)):
        s = states[k]
        np.testing.assert_allclose(rec.x[k], np.concatenate([s, plan[t], [t / 6, t / 6]]), rtol=0, atol=1e-7)
        np.testing.assert_allclose(rec.y[k], np.clip(-s, -1, 1) - plan[t], rtol=0, atol=1e-7)
    trace = ctl.trace()
    assert trace.base_actions is not None and trace.stall.tolist() == [True, True, False, False, False]


def test_sync_index_is_age_minus_delay():
    cfg = ExecutionConfig(strategy="sync", actions_per_chunk=4, n_action_steps=4, prefix=False)
    seen = []
    ctl = ChunkController(cfg, 1, lambda: np.zeros(1, np.float32),
                          step_hook=lambda obs, a, ctx: (seen.append((ctx.index, ctx.age)), a)[1])
    obs = {"observation.state": np.zeros(1, np.float32)}
    assert ctl.wants_request(obs, 0)
    ctl.request(obs, 0, 3)
    for t in range(6):
        if t == 3:
            ctl.arrive(1, np.zeros((4, 1), np.float32), t)
        ctl.execute(t, obs)
    assert seen == [(0, 3), (1, 4), (2, 5)]


def test_targets_clip_the_expert():
    np.testing.assert_allclose(correction_targets([0.2, -0.5], [3.0, -0.1]), [0.8, 0.4], atol=1e-7)


def test_head_forward_and_files_round_trip(tmp_path):
    cfg = CorrectionConfig(state_dim=5, action_dim=3, hidden=[8, 8], horizon=10)
    head = CorrectionHead.init(cfg, seed=3)
    s, b = np.linspace(-1, 1, 5), np.array([0.1, 0.9, -0.3], np.float32)
    x = features(s, b, 4, 6, 10)
    h = np.maximum(x @ head.layers[0][0], 0)
    h = np.maximum(h @ head.layers[1][0], 0)
    expect = np.clip(b + h @ head.layers[2][0], -1, 1)[0]
    np.testing.assert_allclose(head.correct(s, b, 4, 6), expect, rtol=1e-6, atol=1e-6)
    head.save(tmp_path / "corr")
    again = CorrectionHead.load(tmp_path / "corr")
    np.testing.assert_array_equal(again.correct(s, b, 4, 6), head.correct(s, b, 4, 6))
    assert again.config == cfg


def test_config_validation():
    with pytest.raises(ValueError, match="hidden"):
        CorrectionConfig(hidden=[])
    with pytest.raises(FileNotFoundError, match="correction head"):
        CorrectionHead.load("/nonexistent/dir")


def test_composed_strategy_names():
    from chunkwise.runtime.strategies import get_strategy

    spec = get_strategy("latest_only+correction")
    assert spec.name == "latest_only+correction" and spec.wrap_policy is not None
    with pytest.raises(ValueError, match="modifier"):
        get_strategy("latest_only+nothing")


def test_use_base_false_never_sees_the_base_action(tmp_path):
    """The ablation: the same head output whatever the base action, and the target is a* itself."""
    cfg = CorrectionConfig(state_dim=3, action_dim=2, hidden=[4], horizon=10, use_base=False)
    head = CorrectionHead.init(cfg, seed=2)
    s = np.array([0.1, -0.2, 0.3], np.float32)
    a1 = head.correct(s, np.array([0.9, -0.9], np.float32), 3, 5)
    a2 = head.correct(s, np.array([-0.5, 0.2], np.float32), 3, 5)
    np.testing.assert_array_equal(a1, a2)
    head.save(tmp_path / "h")
    assert CorrectionHead.load(tmp_path / "h").config.use_base is False

    class Expert:
        def expert_action(self, obs):
            return np.array([0.25, -0.5], np.float32)

    rec = Recorder(Expert(), horizon=10, use_base=False)
    rec({"observation.state": s}, np.array([0.9, 0.9], np.float32), StepContext(index=2, age=4, horizon=10))
    np.testing.assert_allclose(rec.x[0], [0.1, -0.2, 0.3, 0.0, 0.0, 0.2, 0.4], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(rec.y[0], [0.25, -0.5])
