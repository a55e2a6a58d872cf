import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkwise.scheduling import ActionQueue, TimedAction, get_aggregate
from chunkwise.scheduling.aggregate import AGGREGATE_FUNCTIONS

A = 2


def labelled_chunk(first: int, h: int, tag: float) -> np.ndarray:
    """Action i = [label, tag] so tests can read back which label/chunk ran."""
    return np.stack([np.array([first + i, tag], dtype=np.float32) for i in range(h)])


def test_docstring_timeline_merge():
    q = ActionQueue("latest_only")
    q.merge(labelled_chunk(6, 8, 0.0), first_timestep=6)  # labels 6..13
    for t in (6, 7, 8, 9):
        assert q.pop(now=t).timestep == t
    # request at t=10 (labels 10..15), arrives at 12; 10, 11 executed from the old plan
    assert q.pop(now=10).action[1] == 0.0
    assert q.pop(now=11).action[1] == 0.0
    stats = q.merge(labelled_chunk(10, 6, 1.0), first_timestep=10, arrival_timestep=12)
    assert (stats.stale, stats.merged, stats.appended) == (2, 2, 2)
    assert [ta.timestep for ta in q.leftover()] == [12, 13, 14, 15]
    assert all(ta.action[1] == 1.0 for ta in q.leftover())


def test_pop_clocked_stall_and_expire():
    q = ActionQueue()
    assert q.pop(now=0) is None  # empty -> stall
    q.merge(labelled_chunk(0, 4, 0.0), first_timestep=0)  # label 0 is past: stale
    assert len(q) == 3
    assert q.pop(now=2).timestep == 2  # label 1 expired
    assert q.expired == 1
    assert q.last_executed_timestep == 2
    # a chunk starting after a hole: the hole stalls, the later plan keeps its timing
    q.merge(labelled_chunk(6, 2, 1.0), first_timestep=6)
    assert q.pop(now=3).timestep == 3
    assert q.pop(now=4) is None and q.pop(now=5) is None
    assert q.pop(now=6).timestep == 6


def test_unclocked_pop_and_peek_and_reset():
    q = ActionQueue("average")
    assert q.pop() is None
    assert q.peek(3).shape == (0, 0)
    q.merge(labelled_chunk(0, 3, 0.0), first_timestep=0)
    p = q.peek(2)
    assert p.shape == (2, A) and p[:, 0].tolist() == [0, 1]
    p[:] = 99  # a copy: the queue is untouched
    assert q.peek(5)[:, 0].tolist() == [0, 1, 2]
    ta = q.pop()
    assert isinstance(ta, TimedAction) and ta.timestep == 0
    q.reset()
    assert len(q) == 0 and q.last_executed_timestep == -1


def test_bad_inputs():
    with pytest.raises(ValueError, match="valid: average, conservative, latest_only"):
        ActionQueue("median")
    q = ActionQueue()
    with pytest.raises(ValueError, match=r"\(H, A\)"):
        q.merge(np.zeros(3), 0)
    q.merge(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="action dim"):
        q.merge(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError):
        q.peek(-1)
    q4 = ActionQueue(action_dim=4)
    assert q4.peek(3).shape == (0, 4)
    with pytest.raises(ValueError, match="action dim 2 != queued action dim 4"):
        q4.merge(np.zeros((2, 2)), 0)


@pytest.mark.parametrize(
    "name,w_old", [("weighted_average", 0.3), ("latest_only", 0.0), ("average", 0.5), ("conservative", 0.7)]
)
def test_pairwise_formulas_exact(name, w_old):
    old = np.array([1.0, -2.0], dtype=np.float32)
    new = np.array([3.0, 4.0], dtype=np.float32)
    expected = np.float32(w_old) * old + np.float32(1 - w_old) * new
    np.testing.assert_allclose(AGGREGATE_FUNCTIONS[name](old, new), expected, rtol=0, atol=1e-6)
    q = ActionQueue(name)
    q.merge(old[None], 0)
    q.merge(new[None], 0)
    np.testing.assert_allclose(q.pop().action, expected, rtol=0, atol=1e-6)


def test_temporal_ensemble_weights_oldest_first():
    m = 0.5
    preds = [np.array([1.0]), np.array([2.0]), np.array([7.0])]
    q = ActionQueue("temporal_ensemble", m=m)
    for p in preds:
        q.merge(p[None].astype(np.float32), first_timestep=5)
    w = np.exp(-m * np.arange(3))  # i = 0 is the oldest prediction
    expected = (w * np.array([1.0, 2.0, 7.0])).sum() / w.sum()
    assert q.pop().action[0] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="m must be"):
        get_aggregate("temporal_ensemble", m=-1)
    with pytest.raises(ValueError, match="takes no parameters"):
        get_aggregate("average", m=0.1)


# ---------------------------------------------------------------- property tests
chunk_events = st.lists(
    st.tuples(st.integers(1, 12), st.integers(0, 4), st.integers(0, 3)),  # (H, delay, steps until next)
    min_size=1,
    max_size=15,
)


@settings(max_examples=150, deadline=None)
@given(events=chunk_events, agg=st.sampled_from(["weighted_average", "latest_only", "average", "conservative", "temporal_ensemble"]))
def test_clocked_execution_invariants(events, agg):
    """Executor-like protocol: request at t with delay d, arrives at t+d, pop(now=t) each step."""
    q = ActionQueue(agg)
    t = 0
    executed: list[int] = []
    last_stall = True
    runs_ok = True
    pending = []  # (arrival, first, chunk)
    for h, d, gap in events:
        pending.append((t + d, t, labelled_chunk(t, h, float(t))))
        for _ in range(d + gap + 1):
            for item in [p for p in pending if p[0] == t]:
                q.merge(item[2], item[1], arrival_timestep=t)
                pending.remove(item)
            before = q.peek(len(q)).copy()
            assert np.array_equal(q.peek(len(q)), before)  # peek never mutates
            ta = q.pop(now=t)
            if ta is not None:
                assert ta.timestep == t  # runs exactly when it is due
                assert ta.action[0] == pytest.approx(t, abs=1e-3)  # label column survives every aggregate (all preds agree)
                if executed and not last_stall:
                    runs_ok &= ta.timestep == executed[-1] + 1
                executed.append(ta.timestep)
            last_stall = ta is None
            t += 1
    assert runs_ok
    assert executed == sorted(set(executed))  # strictly increasing: nothing executed twice


@settings(max_examples=150, deadline=None)
@given(
    merges=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 10), st.integers(0, 30), st.integers(0, 3)), max_size=12),
)
def test_no_stale_and_no_repeat_with_arbitrary_merges(merges):
    """Arbitrary (first, H, arrival) merges interleaved with unclocked pops."""
    q = ActionQueue("weighted_average")
    executed: list[int] = []
    for first, h, arrival, n_pop in merges:
        last = q.last_executed_timestep
        q.merge(labelled_chunk(first, h, 0.0), first, arrival_timestep=arrival)
        labels = [ta.timestep for ta in q.leftover()]
        assert all(lb > last for lb in labels)  # nothing at or before the last executed step
        for _ in range(n_pop):
            ta = q.pop()
            if ta is None:
                break
            assert ta.timestep > last
            last = ta.timestep
            executed.append(ta.timestep)
    assert executed == sorted(set(executed))


@settings(max_examples=100, deadline=None)
@given(first=st.integers(0, 20), h=st.integers(1, 10), arrival=st.integers(0, 30))
def test_stale_before_arrival_dropped(first, h, arrival):
    q = ActionQueue()
    stats = q.merge(labelled_chunk(first, h, 0.0), first, arrival_timestep=arrival)
    kept = [ta.timestep for ta in q.leftover()]
    assert kept == [lb for lb in range(first, first + h) if lb >= arrival]
    assert stats.stale + stats.appended == h


@settings(max_examples=100, deadline=None)
@given(
    old=st.lists(st.floats(-10, 10, width=32), min_size=2, max_size=2),
    new=st.lists(st.floats(-10, 10, width=32), min_size=2, max_size=2),
    name=st.sampled_from(sorted(AGGREGATE_FUNCTIONS)),
)
def test_aggregate_formula_property(old, new, name):
    w = {"weighted_average": 0.3, "latest_only": 0.0, "average": 0.5, "conservative": 0.7}[name]
    o, n = np.array(old, np.float32), np.array(new, np.float32)
    q = ActionQueue(name)
    q.merge(o[None], 3)
    q.merge(n[None], 3)
    np.testing.assert_allclose(q.pop().action, w * o.astype(np.float64) + (1 - w) * n, atol=1e-5)
