"""Dynamic batching: requests from many sessions -> one ``predict_chunk`` on one thread.

The single model worker takes the oldest request, then gathers more until the batch has
``max_batch_size`` requests, or as many as there are recently active sessions (each
session has about one request in flight, so waiting for more would only add latency),
or ``max_wait_ms`` has passed since it picked the first one::

    worker:  [wait for 1st]--gather <= max_wait_ms--[predict_chunk(B)]--[wait ...]
    queue:     r1 r2 r3 ...                              r4 r5 (queued meanwhile)

Backpressure: the queue is bounded (``max_queue``); a full queue raises
RESOURCE_EXHAUSTED at submit time. Requests whose deadline passed before the model got
to them fail with DEADLINE_EXCEEDED; nothing is dropped silently.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
import numpy as np

from chunkwise.types import Prefix, stack_observations
from chunkwise.serving.sessions import ServingError

log = logging.getLogger(__name__)


@dataclass
class WorkItem:
    obs: dict[str, Any]
    prefix: Prefix | None
    deadline: float  # time.monotonic()
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    cancelled: bool = False  # the caller gave up (deadline): skip it
    alive: Callable[[], bool] | None = None  # False once the client disconnected


@dataclass
class BatchResult:
    actions: np.ndarray  # (H, A)
    queue_wait_ms: float
    stack_ms: float
    model_ms: float
    batch_size: int


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[dict[str, Any], list[Prefix | None] | None], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        expected_batch: Callable[[], int] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._expected = expected_batch or (lambda: max_batch_size)
        self._queue: collections.deque[WorkItem] = collections.deque()
        self._cv = threading.Condition()
        self._stop = False
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="chunkwise-model-worker", daemon=True)
        self._thread.start()

    def submit(self, item: WorkItem) -> Future:
        with self._cv:
            if self._stop:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request queue is full ({self.max_queue} waiting); retry with backoff",
                )
            self._queue.append(item)
            self._cv.notify()
        return item.future

    def queue_len(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            pending = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for item in pending:
            _fail(item.future, ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down"))
        self._thread.join(timeout)

    # ------------------------------------------------------------------ worker

    def _take_batch(self) -> list[WorkItem]:
        with self._cv:
            while not self._queue and not self._stop:
                self._cv.wait()
            if self._stop:
                return []
            batch = [self._queue.popleft()]
            want = max(1, min(self.max_batch_size, self._expected()))
            t_end = time.monotonic() + self.max_wait_s
            while len(batch) < want:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = t_end - time.monotonic()
                if remaining <= 0 or self._stop:
                    break
                self._cv.wait(remaining)
            # Anything else already waiting rides along (up to the limit): free throughput.
            while self._queue and len(batch) < self.max_batch_size:
                batch.append(self._queue.popleft())
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            now = time.monotonic()
            live: list[WorkItem] = []
            for item in batch:
                if item.cancelled or (item.alive is not None and not item.alive()):
                    item.future.cancel()
                elif now > item.deadline:
                    _fail(
                        item.future,
                        ServingError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"request waited {1000 * (now - item.enqueued):.1f} ms in the queue and missed its deadline",
                        )
                    )
                else:
                    live.append(item)
            if live:
                self._run_batch(live, now)

    def _run_batch(self, items: list[WorkItem], t_start: float) -> None:
        try:
            t0 = time.perf_counter()
            obs = stack_observations([it.obs for it in items])
            prefixes = [it.prefix for it in items]
            t1 = time.perf_counter()
            actions = self._predict(obs, prefixes if any(p is not None for p in prefixes) else None)
            t2 = time.perf_counter()
            actions = np.asarray(actions, dtype=np.float32)
            if actions.ndim != 3 or actions.shape[0] != len(items):
                raise RuntimeError(f"policy returned shape {actions.shape} for a batch of {len(items)}")
        except Exception as exc:  # a policy bug must not kill the worker
            log.exception("predict_chunk failed for a batch of %d", len(items))
            err = ServingError(grpc.StatusCode.INTERNAL, f"policy failed: {type(exc).__name__}: {exc}")
            for it in items:
                _fail(it.future, err)
            return
        self.batch_sizes[len(items)] += 1
        for i, it in enumerate(items):
            if it.future.set_running_or_notify_cancel():
                it.future.set_result(
                    BatchResult(
                        actions=actions[i],
                        queue_wait_ms=1000 * (t_start - it.enqueued),
                        stack_ms=1000 * (t1 - t0),
                        model_ms=1000 * (t2 - t1),
                        batch_size=len(items),
                    )
                )


def _fail(future: Future, err: Exception) -> None:
    try:
        future.set_exception(err)
    except InvalidStateError:  # the caller cancelled it meanwhile
        pass
