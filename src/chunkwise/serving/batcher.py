"""Dynamic batching: requests from many sessions -> one ``predict_chunk`` at a time.

Requests wait in one bounded FIFO queue. Exactly one thread at a time holds the model
(a lock): the *leader*. It takes every queued request (oldest first, up to
``max_batch_size``), and if that is fewer than the previous batch had, waits up to
``max_wait_ms`` for the rest (clients served together tend to come back together; a
lone client never waits, and the previous size is capped by the number of sessions
active in the last second); runs one ``predict_chunk`` for all of them; hands every
request its chunk; and gives up the model. Any request handler whose request is still
queued when the model is free becomes the next leader::

    handler A:  enqueue -> lead: gather(A, B, C) -> predict_chunk(3) -> results -> reply A
    handler B:  enqueue -> wait ........................................ -> reply B
    handler C:  enqueue -> wait ........................................ -> reply C
    handler D:        enqueue -> wait (model busy) ... lead: gather(D, ...) -> ...

Why no dedicated model thread: the handler thread that finds the model idle runs it
itself, which saves two thread hand-offs per request; a lone client pays no batching
cost at all. ``predict_chunk`` still never runs concurrently with itself. When the
model is idle, nothing is queued and the previous batch had one request (a lone
client), ``process`` runs the request directly (solo path): the same alive/deadline
checks, but no queue, no condition-variable round and no gather.

Backpressure: the queue is bounded (``max_queue``); a full queue raises
RESOURCE_EXHAUSTED at enqueue time. A request whose deadline passes before the model
gets to it fails with DEADLINE_EXCEEDED; nothing is dropped silently.

Failures stay with the request that caused them. Every chunk the policy returns is
checked: shape ``(B, H, action_dim)`` and every value finite. A row with NaN or inf is
never sent as actions; if the policy raises, returns a wrong shape, or returns a
non-finite row in a batch of several, the batch is split in halves and each half run
again (recursively), so batch-mates of a bad request get their own chunk and only the
request that fails alone gets INTERNAL (``policy failed: ...`` / ``policy returned
non-finite actions ...``). A poisoned request costs at most ~2 log2(B) extra forward
passes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
import numpy as np

from chunkwise.serving.sessions import ServingError
from chunkwise.types import TASK, Prefix, stack_observations

log = logging.getLogger(__name__)
_F32 = np.dtype(np.float32)


def _waited(item: "WorkItem", now: float) -> str:
    queued = f"{1000 * (now - item.enqueued):.1f} ms in the model queue"
    if item.arrival is None:
        return f"after {queued}"
    return f"{1000 * (now - item.arrival):.1f} ms after it arrived ({queued})"


@dataclass
class BatchResult:
    actions: np.ndarray  # (H, A)
    queue_wait_ms: float
    stack_ms: float
    model_ms: float
    batch_size: int


@dataclass(eq=False)
class WorkItem:
    obs: dict[str, Any]
    prefix: Prefix | None
    deadline: float  # time.monotonic()
    mode: str = ""  # prefix mode the client asked for ("" = the policy as served)
    enqueued: float = field(default_factory=time.monotonic)
    alive: Callable[[], bool] | None = None  # False once the client disconnected
    arrival: float | None = None  # when the request reached the server (deadline messages)
    result: BatchResult | None = None
    error: ServingError | None = None
    taken: bool = False  # a leader has it (it is no longer in the queue)

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[dict[str, Any], list[Prefix | None] | None], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        expected_batch: Callable[[], int] | None = None,
        predict_mode: Callable[[str], Callable[[dict[str, Any], list[Prefix | None] | None], np.ndarray]] | None = None,
        action_dim: int | None = None,
    ) -> None:
        """``predict_mode(mode)`` is the predict function of a prefix mode; a gathered batch
        runs one forward pass per mode present in it. ``action_dim`` (if given) is checked
        on every chunk the policy returns."""
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self._predict = predict
        self._predict_mode = predict_mode
        self.action_dim = action_dim
        self.reruns = 0  # forward passes spent isolating failing requests
        self._tracebacks_logged: set[str] = set()
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._expected = expected_batch or (lambda: max_batch_size)
        self._queue: collections.deque[WorkItem] = collections.deque()
        lock = threading.Lock()
        self._cv = threading.Condition(lock)  # waiters for results / a free model
        self._arrival = threading.Condition(lock)  # a gathering leader waits for new requests
        self._model_busy = False
        self._stop = False
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._last_batch = 1

    def queue_len(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            for item in self._queue:
                item.error = ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
                item.taken = True
            self._queue.clear()
            self._cv.notify_all()
            self._arrival.notify_all()

    def process(self, item: WorkItem) -> BatchResult:
        """Enqueue ``item`` and return its chunk (leading a batch if the model is free)."""
        with self._cv:
            if self._stop:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            # Solo fast path: model idle, nobody queued, and the last batch had one request,
            # so a leader would gather exactly this item and not wait. Run it directly,
            # skipping the queue and the condition-variable round trip.
            solo = not self._model_busy and not self._queue and self._last_batch <= 1
            if solo:
                self._model_busy = True
            else:
                self._enqueue_and_wait(item)
        if solo:
            self._process_solo(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _enqueue_and_wait(self, item: WorkItem) -> None:
        """Called with ``_cv`` held; returns once ``item`` has a result or an error."""
        if len(self._queue) >= self.max_queue:
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request queue is full ({self.max_queue} waiting); retry with backoff",
            )
        self._queue.append(item)
        self._arrival.notify()  # a gathering leader may be waiting for exactly this
        while not item.done:
            if not self._model_busy and not item.taken:
                self._lead()  # returns with the lock held and the model free again
                continue
            remaining = item.deadline - time.monotonic()
            if remaining <= 0 and not item.taken:
                self._queue.remove(item)
                item.error = ServingError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"request missed its deadline {_waited(item, time.monotonic())} "
                    f"({len(self._queue)} others waiting)",
                )
                return
            # A taken item finishes with its batch; keep waiting for it.
            self._cv.wait(remaining if remaining > 0 and not item.taken else 1.0)

    def _process_solo(self, item: WorkItem) -> None:
        """``item`` alone on an idle model (``_model_busy`` already set by the caller)."""
        try:
            batch: list[WorkItem] = []
            item.taken = True
            self._check_taken(item, batch, time.monotonic())  # same alive/deadline checks
            self._run_batch(batch)
        finally:
            with self._cv:
                self._model_busy = False
                if self._queue:  # requests that arrived meanwhile: one of them leads next
                    self._cv.notify_all()

    # ------------------------------------------------------------------ leader

    def _lead(self) -> None:
        """Called with ``_cv`` held; gathers a batch, runs it without the lock, distributes."""
        self._model_busy = True
        try:
            batch = self._gather()
        except BaseException:
            self._model_busy = False
            raise
        self._cv.release()
        try:
            self._run_batch(batch)
        finally:
            self._cv.acquire()
            self._model_busy = False
            self._cv.notify_all()  # results are in; a queued waiter may lead next

    def _take(self, batch: list[WorkItem], now: float) -> None:
        item = self._queue.popleft()
        item.taken = True
        self._check_taken(item, batch, now)

    @staticmethod
    def _check_taken(item: WorkItem, batch: list[WorkItem], now: float) -> None:
        """Append ``item`` to ``batch`` unless its client went away or its deadline passed."""
        if item.alive is not None and not item.alive():
            item.error = ServingError(grpc.StatusCode.CANCELLED, "client went away")
        elif now > item.deadline:
            item.error = ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"request missed its deadline {_waited(item, now)}"
            )
        else:
            batch.append(item)

    def _gather(self) -> list[WorkItem]:
        batch: list[WorkItem] = []
        now = time.monotonic()
        while self._queue and len(batch) < self.max_batch_size:
            self._take(batch, now)
        want = min(self.max_batch_size, self._last_batch)
        if len(batch) < want:  # only then is the (locked) session count worth asking
            want = max(1, min(want, self._expected()))
        t_end = now + self.max_wait_s
        while batch and len(batch) < want and not self._stop:
            remaining = t_end - time.monotonic()
            if remaining <= 0:
                break
            self._arrival.wait(remaining)
            now = time.monotonic()
            while self._queue and len(batch) < self.max_batch_size:
                self._take(batch, now)
        return batch

    def _run_batch(self, items: list[WorkItem]) -> None:
        if not items:
            return
        if len(items) > 1 and len({it.mode for it in items}) > 1:  # one forward pass per mode, in order
            for mode in dict.fromkeys(it.mode for it in items):
                self._run_batch([it for it in items if it.mode == mode])
            return
        mode = items[0].mode
        predict = self._predict
        if mode:
            if self._predict_mode is None:
                err = ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"this server has no prefix mode {mode!r}")
                for it in items:
                    it.error = err
                return
            try:
                predict = self._predict_mode(mode)
            except Exception as exc:  # noqa: BLE001 - building the mode's view failed
                err = self._policy_error(exc, len(items))
                for it in items:
                    it.error = err
                return
        self._run_split(predict, items)
        self._last_batch = len(items)

    def _policy_error(self, exc: BaseException, n: int) -> ServingError:
        msg = f"{type(exc).__name__}: {exc}"
        if len(msg) > 300:
            msg = msg[:300] + "..."
        kind = type(exc).__name__
        if kind not in self._tracebacks_logged:  # the first of each kind with its traceback;
            self._tracebacks_logged.add(kind)  # the service logs every failure (rate-limited)
            log.warning("predict_chunk raised %s for a request run alone (first of its kind; later ones are "
                        "counted in the rejection log lines)", kind, exc_info=exc)
        return ServingError(grpc.StatusCode.INTERNAL, f"policy failed: {msg}")

    def _run_split(self, predict: Callable, items: list[WorkItem]) -> None:
        """Run ``items`` as one batch; isolate failing requests by halving (module doc)."""
        t_start = time.monotonic()
        n = len(items)
        try:
            t0 = time.perf_counter()
            if n == 1:  # views, no copy of (possibly large) images
                obs = {k: ([v] if k == TASK else v[None]) for k, v in items[0].obs.items()}
            else:
                obs = stack_observations([it.obs for it in items])
            if n == 1:
                prefixes = None if items[0].prefix is None else [items[0].prefix]
            else:
                prefixes = [it.prefix for it in items]
                if all(p is None for p in prefixes):
                    prefixes = None
            t1 = time.perf_counter()
            actions = predict(obs, prefixes)
            t2 = time.perf_counter()
            if type(actions) is not np.ndarray or actions.dtype != _F32:
                with np.errstate(over="ignore", invalid="ignore"):  # a float64 overflow is inf: checked below
                    actions = np.asarray(actions, dtype=_F32)
            if (actions.ndim != 3 or actions.shape[0] != n or actions.shape[1] < 1
                    or (self.action_dim is not None and actions.shape[2] != self.action_dim)):
                want = f"({n}, H, {self.action_dim if self.action_dim is not None else 'A'})"
                raise RuntimeError(f"policy returned shape {actions.shape} for a batch of {n}, expected {want}")
        except Exception as exc:  # a policy bug must not take the server down, nor fail batch-mates
            if n > 1:
                self._rerun_halves(predict, items)
                return
            items[0].error = self._policy_error(exc, n)
            return
        finite = None if np.isfinite(actions).all() else np.isfinite(actions.reshape(n, -1)).all(axis=1)
        self.batch_sizes[n] += 1
        bad: list[WorkItem] = []
        for i, it in enumerate(items):
            if finite is not None and not finite[i]:
                bad.append(it)
                continue
            it.result = BatchResult(
                actions=actions[i],
                queue_wait_ms=1000 * (t_start - it.enqueued),
                stack_ms=1000 * (t1 - t0),
                model_ms=1000 * (t2 - t1),
                batch_size=n,
            )
        if not bad:
            return
        if n == 1:
            count = int((~np.isfinite(actions)).sum())
            items[0].error = ServingError(
                grpc.StatusCode.INTERNAL,
                f"policy returned non-finite actions ({count} of {actions[0].size} values NaN or inf) for this "
                "request; no action is sent (check the observation's scale)",
            )
        elif len(bad) < n:
            self.reruns += 1
            self._run_split(predict, bad)  # a strict subset: always terminates
        else:
            self._rerun_halves(predict, items)

    def _rerun_halves(self, predict: Callable, items: list[WorkItem]) -> None:
        half = len(items) // 2
        self.reruns += 2
        self._run_split(predict, items[:half])
        self._run_split(predict, items[half:])
