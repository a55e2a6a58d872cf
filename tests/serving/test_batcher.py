"""DynamicBatcher and SessionTable in isolation (no gRPC)."""

import threading
import time

import grpc
import numpy as np
import pytest

from chunkwise.serving.batcher import DynamicBatcher, WorkItem
from chunkwise.serving.sessions import ServingError, SessionTable


def _item(v: float, timeout: float = 5.0, alive=None) -> WorkItem:
    return WorkItem(obs={"observation.state": np.full(3, v, np.float32), "task": "t"}, prefix=None,
                    deadline=time.monotonic() + timeout, alive=alive)


def _echo(sizes, sleep=0.0):
    def predict(obs, prefix):
        sizes.append(len(obs["task"]))
        time.sleep(sleep)
        return np.repeat(obs["observation.state"][:, None, :], 2, axis=1)
    return predict


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    sizes: list[int] = []
    b = DynamicBatcher(_echo(sizes, sleep=0.05), max_batch_size=8, max_wait_ms=20)
    out = {}

    def go(i):
        out[i] = b.process(_item(float(i)))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(out) == list(range(8))
    for i, r in out.items():
        assert r.actions.shape == (2, 3) and np.all(r.actions == i)
    assert sum(sizes) == 8 and max(sizes) > 1 and len(sizes) < 8
    assert max(r.batch_size for r in out.values()) == max(sizes)


def test_lone_client_never_waits_for_a_batch():
    sizes: list[int] = []
    b = DynamicBatcher(_echo(sizes), max_batch_size=32, max_wait_ms=200)
    t0 = time.perf_counter()
    for i in range(5):
        b.process(_item(i))
    assert time.perf_counter() - t0 < 0.5  # 5 x 200 ms would be 1 s
    assert sizes == [1] * 5


def test_policy_exception_is_internal_and_batcher_keeps_working():
    calls = []

    def predict(obs, prefix):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.zeros((len(obs["task"]), 2, 3), np.float32)

    b = DynamicBatcher(predict, max_batch_size=4, max_wait_ms=0)
    with pytest.raises(ServingError) as ei:
        b.process(_item(1.0))
    assert ei.value.code == grpc.StatusCode.INTERNAL and "RuntimeError: boom" in ei.value.message
    assert b.process(_item(2.0)).actions.shape == (2, 3)


def test_wrong_output_shape_is_internal():
    b = DynamicBatcher(lambda obs, p: np.zeros((5, 2, 3)), max_batch_size=4, max_wait_ms=0)
    with pytest.raises(ServingError, match="shape"):
        b.process(_item(1.0))


def test_queue_limit_and_deadline():
    gate = threading.Event()

    def predict(obs, prefix):
        gate.wait(5)
        return np.zeros((len(obs["task"]), 2, 3), np.float32)

    b = DynamicBatcher(predict, max_batch_size=1, max_wait_ms=0, max_queue=2)
    errors: list[grpc.StatusCode] = []

    def go(timeout):
        try:
            b.process(_item(0.0, timeout=timeout))
        except ServingError as e:
            errors.append(e.code)

    leader = threading.Thread(target=go, args=(5.0,))
    leader.start()
    time.sleep(0.1)  # the leader is inside predict
    waiters = [threading.Thread(target=go, args=(0.2,)) for _ in range(2)]
    for t in waiters:
        t.start()
    time.sleep(0.05)
    with pytest.raises(ServingError) as ei:
        b.process(_item(0.0))  # queue holds 2 already
    assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    for t in waiters:
        t.join(5)
    assert errors == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2  # waited past their deadline
    gate.set()
    leader.join(5)
    assert len(errors) == 2


def test_disconnected_clients_are_skipped():
    sizes: list[int] = []
    b = DynamicBatcher(_echo(sizes), max_batch_size=4, max_wait_ms=0)
    with pytest.raises(ServingError) as ei:
        b.process(_item(1.0, alive=lambda: False))
    assert ei.value.code == grpc.StatusCode.CANCELLED and sizes == []


def test_session_table_rules_and_expiry():
    t = SessionTable(ttl_s=0.2, max_sessions=2)
    t.reset("a", 0)
    t.admit("a", 0, 0)
    t.admit("a", 0, 5)
    with pytest.raises(ServingError, match="not after"):
        t.admit("a", 0, 5)
    t.reset("a", 1)
    t.admit("a", 1, 0)  # new episode: timesteps start over
    t.reset("b", 0)
    with pytest.raises(ServingError) as ei:
        t.reset("c", 0)
    assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(0.3)
    with pytest.raises(ServingError) as ei:
        t.admit("a", 1, 9)
    assert ei.value.code == grpc.StatusCode.NOT_FOUND
    assert t.expire() == 1 and len(t) == 0
    with pytest.raises(ServingError, match="non-empty"):
        t.reset("", 0)


def test_solo_path_keeps_deadline_and_disconnect_checks_and_hands_over_to_queued_requests():
    sizes: list[int] = []
    b = DynamicBatcher(_echo(sizes), max_batch_size=4, max_wait_ms=0)
    with pytest.raises(ServingError) as ei:  # idle model, empty queue: the solo path
        b.process(_item(1.0, timeout=-1.0))
    assert ei.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and sizes == []
    # A solo request holds the model; requests arriving meanwhile queue up and are
    # served (as one batch) once it finishes.
    gate, entered = threading.Event(), threading.Event()

    def slow(obs, prefix):
        sizes.append(len(obs["task"]))
        if len(sizes) == 1:
            entered.set()
            gate.wait(5)
        return np.repeat(obs["observation.state"][:, None, :], 2, axis=1)

    b = DynamicBatcher(slow, max_batch_size=4, max_wait_ms=0)
    sizes.clear()
    out = {}
    first = threading.Thread(target=lambda: out.setdefault(0, b.process(_item(0.0))))
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=lambda i=i: out.setdefault(i, b.process(_item(float(i))))) for i in (1, 2, 3)]
    for t in others:
        t.start()
    time.sleep(0.1)
    assert b.queue_len() == 3  # they wait while the solo request holds the model
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert sorted(out) == [0, 1, 2, 3] and all(np.all(out[i].actions == i) for i in out)
    assert sizes == [1, 3] and out[0].batch_size == 1 and out[1].batch_size == 3
