import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunkwise.scheduling import (
    FixedDelay,
    ObservationFilter,
    SampledDelay,
    delay_steps_from_ms,
    must_go,
    should_send_observation,
)


def test_trigger_threshold_examples():
    assert should_send_observation(25, 50, 0.5)
    assert not should_send_observation(26, 50, 0.5)
    assert should_send_observation(0, 50, 0.0)
    assert not should_send_observation(1, 50, 0.0)
    assert should_send_observation(50, 50, 1.0)


@given(q=st.integers(0, 200), n=st.integers(1, 100), g=st.floats(0, 1))
def test_trigger_matches_formula(q, n, g):
    assert should_send_observation(q, n, g) == (q / n <= g)
    if q == 0:
        assert should_send_observation(q, n, g)  # an empty queue always asks


def test_trigger_bad_inputs():
    with pytest.raises(ValueError, match=r"chunk_size_threshold must be in \[0, 1\]"):
        should_send_observation(1, 50, 1.5)
    with pytest.raises(ValueError, match="actions_per_chunk must be positive"):
        should_send_observation(1, 0, 0.5)
    with pytest.raises(ValueError):
        must_go(-1)


def test_must_go():
    assert must_go(0)
    assert not must_go(3)


def test_observation_filter_off_by_default_and_must_go_passes():
    f = ObservationFilter()
    s = np.zeros(3)
    assert f.accept(s) and f.accept(s)  # off: identical states are sent
    f = ObservationFilter(enabled=True, atol=0.5)
    assert f.accept(s)
    assert not f.accept(s + 0.1)  # near-duplicate filtered
    assert f.accept(s + 0.1, is_must_go=True)  # never filtered when the queue is empty
    assert f.accept(s + 2.0)
    f.reset()
    assert f.accept(s + 2.0)


def test_fixed_delay_and_ms_conversion():
    assert FixedDelay(3).sample(np.random.default_rng(0)) == 3
    assert delay_steps_from_ms(25.0, 80) == 2  # exactly 2 steps of 12.5 ms
    assert delay_steps_from_ms(25.1, 80) == 3  # ceil
    assert delay_steps_from_ms(0.0, 80) == 0
    assert FixedDelay.from_ms(100, 30).d == 3
    with pytest.raises(ValueError, match=">= 0"):
        FixedDelay(-1)
    with pytest.raises(ValueError):
        delay_steps_from_ms(-1.0, 80)
    with pytest.raises(ValueError):
        delay_steps_from_ms(float("nan"), 80)


@given(ms=st.floats(0, 5000), fps=st.floats(1, 1000))
def test_ms_conversion_is_ceil(ms, fps):
    d = delay_steps_from_ms(ms, fps)
    assert d >= 0
    assert d * 1000.0 / fps >= ms - 1e-6 * max(1.0, ms)  # enough steps to cover the latency
    assert (d - 1) * 1000.0 / fps < ms + 1e-6 * max(1.0, ms) or d == 0


def test_sampled_delay_seeded_and_distribution():
    m = SampledDelay([1, 4], [0.25, 0.75])
    a = [m.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [m.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    xs = np.array([m.sample(rng) for _ in range(4000)])
    assert set(xs.tolist()) <= {1, 4}
    assert abs((xs == 4).mean() - 0.75) < 0.03
    assert m.max_delay == 4
    with pytest.raises(ValueError):
        SampledDelay([-1, 2])
    with pytest.raises(ValueError, match="sum to 1"):
        SampledDelay([1, 2], [0.5, 0.6])


def test_sampled_delay_from_ms_samples():
    m = SampledDelay.from_ms_samples([10.0, 20.0, 30.0, 12.0], fps=80)  # steps 1, 2, 3, 1
    assert m.values == (1, 2, 3)
    assert np.allclose(m._p, [0.5, 0.25, 0.25])
    assert math.isclose(sum(m._p), 1.0)


def test_replay_delay_gives_each_episode_its_measured_sequence_then_the_fallback():
    import numpy as np

    from chunkwise.scheduling import FixedDelay, ReplayDelay

    d = ReplayDelay({3: [4, 1, 6]}, fallback=FixedDelay(2))
    rng = np.random.default_rng(0)
    d.reset(3)
    assert [d.sample(rng) for _ in range(5)] == [4, 1, 6, 2, 2]
    d.reset(7)  # unknown seed: the fallback throughout
    assert [d.sample(rng) for _ in range(2)] == [2, 2]
    d.reset(3)  # replays from the start for every episode with that seed
    assert d.sample(rng) == 4 and d.max_delay == 6


def test_steady_state_idle_timeline_h20_d16():
    """The docstring's timeline: H = 20, g = 1, d = 16 moves the robot 4 of every 16 steps."""
    from chunkwise.scheduling import starvation_note, steady_state_idle

    assert steady_state_idle(20, 16, 1.0) == (16, 12)
    assert steady_state_idle(40, 16, 1.0) == (16, 0)
    assert steady_state_idle(20, 10, 0.5) == (10, 0)  # H = 2d and floor(gH) = d: just enough
    assert steady_state_idle(20, 12, 0.5) == (12, 4)
    assert steady_state_idle(20, 4, 0.0) == (20, 4)  # g = 0 waits for an empty queue: d idle per chunk
    assert steady_state_idle(4, 6, 0.5) == (6, 6)  # every chunk arrives stale
    assert steady_state_idle(10, 0, 0.3) == (7, 0)  # 0.3 * 10 floors to 3, not 2
    assert starvation_note(40, 16, 1.0) is None
    note = starvation_note(20, 16, 1.0)
    assert "12 of every 16 steps" in note and "actions_per_chunk >= 32" in note
    assert "chunk_size_threshold above 0" in starvation_note(20, 4, 0.0)
    with pytest.raises(ValueError, match="delay"):
        steady_state_idle(20, -1, 0.5)
