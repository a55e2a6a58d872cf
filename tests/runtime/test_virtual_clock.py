import numpy as np
import pytest

from chunkwise.runtime import ExecutionConfig, VirtualClockExecutor, get_strategy, available_strategies
from chunkwise.scheduling import FixedDelay, SampledDelay
from chunkwise.types import Prefix

from .fakes import CounterEnv, LabelPolicy


def run(cfg, delay, steps=9, chunk_size=6, prefix_length=None, seed=0):
    env = CounterEnv(max_episode_steps=steps)
    pol = LabelPolicy(chunk_size, prefix_length=prefix_length)
    ex = VirtualClockExecutor(env, pol, cfg, delay)
    return ex.run_episode(seed), pol


def test_async_timeline_matches_docstring():
    """H = actions_per_chunk = 6, g = 0.5, d = 2 (the timeline in virtual_clock.py).

    t          0   1   2   3   4   5   6   7   8
    queue_len  0   0   4   3   2   4   3   2   4
    request    o0          o3          o6
    executed   -   -   c0  c0  c0  c1  c1  c1  c2
    """
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=6, chunk_size_threshold=0.5)
    r, pol = run(cfg, 2)
    tr = r.trace
    assert tr.queue_len.tolist() == [0, 0, 4, 3, 2, 4, 3, 2, 4]
    assert np.flatnonzero(tr.request).tolist() == [0, 3, 6]
    assert tr.delay[tr.request].tolist() == [2, 2, 2]
    assert tr.chunk.tolist() == [-1, -1, 0, 0, 0, 1, 1, 1, 2]
    assert tr.stall.tolist() == [True, True] + [False] * 7
    assert np.flatnonzero(tr.seam).tolist() == [5, 8]
    # every executed action is the one labelled with the step it ran at: none stale
    ran = ~tr.stall
    assert np.array_equal(tr.actions[ran, 0], np.flatnonzero(ran).astype(np.float32))
    np.testing.assert_array_equal(tr.actions[tr.stall], [[-1, -1], [-1, -1]])  # idle action
    assert (r.inferences, r.stall_steps, r.steps) == (3, 2, 9)


def test_sync_blocks_and_starts_chunk_at_arrival():
    cfg = ExecutionConfig(strategy="sync", actions_per_chunk=6, n_action_steps=3)
    r, _ = run(cfg, 2, steps=12)
    tr = r.trace
    # request at 0 -> idle 0,1 -> c0 actions 0..2 at 2,3,4 -> request at 5 -> idle 5,6 -> ...
    assert np.flatnonzero(tr.request).tolist() == [0, 5, 10]
    assert tr.stall.tolist() == [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    # sync executes the chunk from its first action (obs step + 0), not the stale-dropped tail
    assert tr.actions[2:5, 0].tolist() == [0, 1, 2]
    assert tr.actions[7:10, 0].tolist() == [5, 6, 7]
    assert r.stall_steps == 6 and r.inferences == 3


def test_async_d0_g0_equals_sync_d0():
    a, _ = run(ExecutionConfig(strategy="async", actions_per_chunk=6, chunk_size_threshold=0.0), 0, steps=20)
    s, _ = run(ExecutionConfig(strategy="sync", actions_per_chunk=6), 0, steps=20)
    np.testing.assert_array_equal(a.trace.actions, s.trace.actions)
    assert a.stall_steps == s.stall_steps == 0


def test_delay_bigger_than_queue_stalls_and_drops_stale():
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=4, chunk_size_threshold=0.5)
    r, _ = run(cfg, 6, steps=30, chunk_size=4)
    tr = r.trace
    ran = ~tr.stall
    assert np.array_equal(tr.actions[ran, 0], np.flatnonzero(ran).astype(np.float32))
    # a chunk of 4 requested at t arriving at t+6 is entirely stale: the robot never moves
    assert ran.sum() == 0 and r.stall_steps == 30


def test_prefix_hook_gets_queued_actions_and_delay():
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=6, chunk_size_threshold=0.5)
    r, pol = run(cfg, 2, prefix_length=0)
    first, second = pol.prefixes[0][0], pol.prefixes[1][0]
    assert isinstance(first, Prefix) and first.delay == 2 and first.actions.shape == (0, 2)
    # at t=3 the queue holds c0's labels 3, 4, 5: the prefix starts at the obs timestep
    assert second.actions[:, 0].tolist() == [3, 4, 5] and second.actions[:, 1].tolist() == [0, 0, 0]
    _, pol2 = run(ExecutionConfig(prefix=False, actions_per_chunk=6), 2, prefix_length=0)
    assert all(p is None for p in pol2.prefixes)


def test_temporal_ensemble_runs_and_reset_per_episode():
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="temporal_ensemble", actions_per_chunk=6, chunk_size_threshold=1.0)
    env, pol = CounterEnv(max_episode_steps=10), LabelPolicy(6)
    ex = VirtualClockExecutor(env, pol, cfg, 1)
    r1 = ex.run_episode(3)
    r2 = ex.run_episode(3)
    assert pol.resets == 2
    np.testing.assert_array_equal(r1.trace.actions, r2.trace.actions)
    ran = ~r1.trace.stall
    # all predictions agree on column 0 (the label), so the ensemble keeps it exact
    np.testing.assert_allclose(r1.trace.actions[ran, 0], np.flatnonzero(ran), atol=1e-5)


def test_success_and_steps_to_success():
    env, pol = CounterEnv(max_episode_steps=50, goal=10.0), LabelPolicy(6)
    r = VirtualClockExecutor(env, pol, ExecutionConfig(actions_per_chunk=6), 0).run_episode(0)
    # actions 0 + 1 + 2 + 3 + 4 = 10 >= goal after 5 steps; terminates there
    assert r.success and r.steps_to_success == 5 and r.steps == 5 and r.episode_return == 1.0


def test_sampled_delay_deterministic_per_seed():
    cfg = ExecutionConfig(actions_per_chunk=6, chunk_size_threshold=0.5)
    dm = SampledDelay([0, 1, 2, 3])
    a, _ = run(cfg, dm, steps=40, seed=11)
    b, _ = run(cfg, dm, steps=40, seed=11)
    c, _ = run(cfg, dm, steps=40, seed=12)
    np.testing.assert_array_equal(a.trace.delay, b.trace.delay)
    np.testing.assert_array_equal(a.trace.actions, b.trace.actions)
    assert not np.array_equal(a.trace.delay, c.trace.delay)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="unknown strategy 'fast'; valid: sync, async"):
        ExecutionConfig(strategy="fast")
    with pytest.raises(ValueError, match="valid: average, conservative, latest_only, temporal_ensemble, weighted_average"):
        ExecutionConfig(aggregate_fn_name="mean")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ExecutionConfig(chunk_size_threshold=-0.1)
    with pytest.raises(ValueError, match="n_action_steps"):
        ExecutionConfig(actions_per_chunk=5, n_action_steps=6)
    with pytest.raises(ValueError, match="actions_per_chunk=10 > the policy's chunk_size=6"):
        VirtualClockExecutor(CounterEnv(), LabelPolicy(6), ExecutionConfig(actions_per_chunk=10))
    with pytest.raises(ValueError, match=">= 0"):
        VirtualClockExecutor(CounterEnv(), LabelPolicy(6), ExecutionConfig(actions_per_chunk=6), FixedDelay(-2))


def test_strategy_registry():
    assert {"sync", "latest_only", "temporal_ensemble"} <= set(available_strategies())
    base = ExecutionConfig(strategy="sync", aggregate_fn_name="average")
    assert get_strategy("sync").apply(base).strategy == "sync"
    cfg = get_strategy("conservative").apply(base)
    assert (cfg.strategy, cfg.aggregate_fn_name) == ("async", "conservative")
    with pytest.raises(ValueError, match="unknown strategy 'rtc'; valid: average"):
        get_strategy("rtc")


@pytest.mark.parametrize("h", [4, 6, 10, 20, 40])
@pytest.mark.parametrize("g", [0.0, 0.3, 0.5, 1.0])
def test_steady_state_idle_formula_matches_the_executor(h, g):
    """``steady_state_idle``'s period and idle steps are what the executor does, for d = 0 .. 16."""
    from chunkwise.scheduling import steady_state_idle

    for d in [0, 1, 2, 3, 4, 6, 8, 12, 16]:
        cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=h,
                              chunk_size_threshold=g)
        r, _ = run(cfg, d, steps=300, chunk_size=h)
        req = np.flatnonzero(r.trace.request)
        req = req[req >= 150]  # past the start-up transient
        period, idle = steady_state_idle(h, d, g)
        assert set(np.diff(req).tolist()) == {period}, (h, d, g)
        # whole periods only: the idle steps sit at the end of each period
        assert r.trace.stall[req[0]:req[-1]].sum() == idle * (len(req) - 1), (h, d, g)
