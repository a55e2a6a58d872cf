"""ChunkController's per-step rules, without an env, a policy, a clock or a transport."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chunkwise.scheduling import controller as controller_mod
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import ChunkController

IDLE = np.array([-1.0, -1.0], np.float32)


def label_chunk(t: int, h: int, tag: float = 0.0) -> np.ndarray:
    """Action i = [t + i, tag]: a test can read which label (and which chunk) ran."""
    return np.stack([np.arange(h, dtype=np.float32) + t, np.full(h, tag, np.float32)], axis=1)


def drive(cfg: ExecutionConfig, delays, steps: int, h: int = 6, prefix_length=None):
    """Request / arrive / execute by hand: the chunk asked at t comes back at t + delays(t)."""
    c = ChunkController(cfg, 2, lambda: IDLE, prefix_length=prefix_length)
    pending: dict[int, tuple[int, np.ndarray]] = {}
    requests = []
    for t in range(steps):
        for rid, (at, chunk) in sorted(pending.items()):
            if at == t:
                assert c.arrive(rid, chunk, t)
                del pending[rid]
        obs = {"observation.state": np.array([t], np.float32)}
        if c.wants_request(obs, t):
            d = delays(t)
            req = c.request(obs, t, d)
            requests.append(req)
            chunk = label_chunk(t, h, tag=len(requests) - 1)
            if d == 0:
                c.arrive(req.request_id, chunk, t)
            else:
                pending[req.request_id] = (t + d, chunk)
        c.execute(t)
        c.record_outcome(0.0, False)
    return c, c.trace(), requests


def _docstring_row(name: str) -> list[str]:
    line = next(ln for ln in controller_mod.__doc__.splitlines() if ln.strip().startswith(name))
    return re.split(r"\s+", line.split("(")[0].strip())[1:]


def test_async_timeline_matches_the_module_docstring():
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=6, chunk_size_threshold=0.5)
    _, tr, _ = drive(cfg, lambda t: 2, steps=9)
    assert tr.queue_len.tolist() == [int(x) for x in _docstring_row("queue_len")]
    assert np.flatnonzero(tr.request).tolist() == [0, 3, 6]
    assert tr.chunk.tolist() == [-1, -1, 0, 0, 0, 1, 1, 1, 2]
    assert tr.stall.tolist() == [True, True] + [False] * 7
    assert np.flatnonzero(tr.seam).tolist() == [5, 8]
    assert tr.delay[tr.request].tolist() == [2, 2, 2] and tr.delay_hint[tr.request].tolist() == [2, 2, 2]
    ran = ~tr.stall  # every executed action is the one labelled with its own step
    assert np.array_equal(tr.actions[ran, 0], np.flatnonzero(ran).astype(np.float32))
    np.testing.assert_array_equal(tr.actions[tr.stall], [IDLE, IDLE])


def test_sync_labels_the_chunk_from_its_arrival():
    cfg = ExecutionConfig(strategy="sync", actions_per_chunk=6, n_action_steps=3)
    _, tr, _ = drive(cfg, lambda t: 2, steps=12)
    assert np.flatnonzero(tr.request).tolist() == [0, 5, 10]
    assert tr.stall.tolist() == [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    assert tr.actions[2:5, 0].tolist() == [0, 1, 2] and tr.actions[7:10, 0].tolist() == [5, 6, 7]


@pytest.mark.parametrize("prefix_length, expected", [(None, None), (0, [3, 4, 5]), (2, [3, 4])])
def test_prefix_is_what_prefix_length_asks_for(prefix_length, expected):
    cfg = ExecutionConfig(aggregate_fn_name="latest_only", actions_per_chunk=6, chunk_size_threshold=0.5)
    _, _, reqs = drive(cfg, lambda t: 2, steps=9, prefix_length=prefix_length)
    second = reqs[1].prefix
    if expected is None:
        assert all(r.prefix is None for r in reqs)
    else:  # at t=3 the queue holds labels 3, 4, 5 of the first chunk
        assert second.delay == 2 and second.actions[:, 0].tolist() == expected
        assert reqs[0].prefix.actions.shape == (0, 2)  # the first request: nothing queued


def test_prefix_off_in_the_config_wins():
    cfg = ExecutionConfig(actions_per_chunk=6, prefix=False)
    _, _, reqs = drive(cfg, lambda t: 2, steps=9, prefix_length=0)
    assert all(r.prefix is None for r in reqs)


def test_estimated_delay_is_the_largest_of_the_last_three():
    cfg = ExecutionConfig(actions_per_chunk=6, chunk_size_threshold=1.0, prefix_delay="estimated")
    seq = iter([4, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    _, tr, reqs = drive(cfg, lambda t: next(seq), steps=14, prefix_length=0)
    told = [r.delay_hint for r in reqs]
    had = tr.delay[tr.request].tolist()
    assert had[:6] == [4, 1, 1, 1, 1, 2]
    # 0 before anything came back, then max(last 3 delays that had arrived by then)
    assert told[:6] == [0, 4, 4, 4, 1, 1]


def test_a_timed_out_request_is_asked_again_and_its_late_reply_still_merges():
    cfg = ExecutionConfig(aggregate_fn_name="latest_only", actions_per_chunk=6, chunk_size_threshold=0.5)
    c = ChunkController(cfg, 2, lambda: IDLE, timeout_steps=3)
    obs = {"observation.state": np.zeros(1, np.float32)}
    first = c.request(obs, 0)
    assert not c.wants_request(obs, 1) and not c.wants_request(obs, 2)
    assert c.wants_request(obs, 3) and "unanswered after 3 steps" in c.errors[0]
    second = c.request(obs, 3)
    assert c.arrive(first.request_id, label_chunk(0, 6), 4)  # late, labels 0..3 stale
    assert c.execute(4)[0] == 4 and c.in_flight  # the second is still awaited
    assert not c.arrive(12345, label_chunk(0, 6), 5) and c.unmatched == 1
    c.fail(second.request_id, "stream broke")
    assert not c.in_flight and c.errors[-1] == "stream broke"


def test_observation_filter_never_drops_a_must_go():
    cfg = ExecutionConfig(actions_per_chunk=6, chunk_size_threshold=1.0, observation_filter=True,
                          observation_filter_atol=10.0)
    c = ChunkController(cfg, 2, lambda: IDLE)
    obs = {"observation.state": np.zeros(1, np.float32)}
    req = c.request(obs, 0)
    assert c.filter.accept(obs["observation.state"])  # the state sent is recorded
    c.arrive(req.request_id, label_chunk(0, 6), 0)
    assert not c.wants_request(obs, 1)  # same state, queue not empty: filtered
    for t in range(0, 6):
        c.execute(t)
    assert c.wants_request(obs, 6)  # queue empty: must go


def test_bad_chunks_are_named():
    c = ChunkController(ExecutionConfig(actions_per_chunk=6), 2, lambda: IDLE)
    req = c.request({}, 0)
    with pytest.raises(ValueError, match=r"expected \(H, 2\)"):
        c.arrive(req.request_id, np.zeros((6, 3)), 0)
    req = c.request({}, 0)
    with pytest.raises(ValueError, match="H=4 < 6"):
        c.arrive(req.request_id, np.zeros((4, 2)), 0)
