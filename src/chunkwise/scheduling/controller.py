"""The per-step rules of chunk execution, once, for the virtual and the wall clock.

``ChunkController`` owns the action queue of one robot and decides, at control step t:

    1. arrive(id, chunk, t)   a chunk requested at step s merges now, d = t - s after it
                              was asked for: labels s .. s+H-1 (sync: t .. t+H-1, the robot
                              was blocked), labels < t are stale and dropped, the rest merge
                              with the strategy's aggregate function
    2. wants_request(obs, t)  nothing in flight and the trigger fires:
                              sync:  the queue is empty (the chunk's n_action_steps ran out)
                              async: len(queue) / actions_per_chunk <= g (``must_go`` when
                                     empty; the optional observation filter never drops it)
       request(obs, t, d)     the observation and the prefix the policy is told about
                              (``PolicyMetadata.prefix_length``): the queued actions from
                              step t on and the delay d (exact on the virtual clock, else
                              the largest delay of the last 3 chunks)
    3. execute(t, obs)        ``queue.pop(now=t)``, or the idle action (a stall); seams;
                              then the optional per-step hook (e.g. a correction head,
                              A2C2): a = hook(obs_t, a, StepContext(index, age)), where
                              index = t - (first label of the action's chunk) and
                              age = t - (step that chunk's observation was taken at)
    4. record_outcome(r, ok)  reward and success of the env step

It has no threads, no env, no clock and no transport: ``runtime/loop.py`` drives it, with a
local policy and a delay model (virtual clock) or a server stream (wall clock) plugged in,
so the two clocks cannot disagree about a rule.

Timeline, async, H = actions_per_chunk = 6, g = 0.5, d = 2 (asserted in
tests/scheduling/test_controller.py, without an env)::

    t          0   1   2   3   4   5   6   7   8
    queue_len  0   0   4   3   2   4   3   2   4     (after arrivals, before the pop)
    request    o0          o3          o6            (len/6 <= 0.5, nothing in flight)
    arrival            c0          c1          c2    (c1 labels 3..8: 3,4 stale, 5 merged)
    executed   -   -   c0  c0  c0  c1  c1  c1  c2    (chunk whose plan ran at t)
    stall      x   x
    seam                           ^           ^     (first action of a newer chunk)
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.queue import ActionQueue
from chunkwise.scheduling.trigger import ObservationFilter, must_go, should_send_observation
from chunkwise.types import OBS_STATE, Observation, Prefix, prefix_of

RECENT_DELAYS = 3  # the estimated delay is the largest of this many last arrivals


@dataclass(frozen=True)
class StepContext:
    """Where the popped action comes from: ``index`` in its chunk, ``age`` of its observation.

    Async: index == age (labels start at the request step). Sync: the chunk's labels start
    at its arrival, so index = age - d. ``horizon`` = actions_per_chunk.
    """

    index: int
    age: int
    horizon: int


# (latest observation, popped action, context) -> the action to execute; stalls skip it
StepHook = Callable[[Observation, np.ndarray, StepContext], np.ndarray]


@dataclass
class StepTrace:
    """Per-step record of one episode (arrays of length T = steps run)."""

    actions: np.ndarray  # (T, A) what was sent to the env (idle action on stalls)
    stall: np.ndarray  # (T,) bool: no queued action, env idled
    seam: np.ndarray  # (T,) bool: first executed action of a newer chunk than the previous step's
    queue_len: np.ndarray  # (T,) queued actions at the step (after arrivals, before the pop)
    request: np.ndarray  # (T,) bool: an observation was captured and a chunk requested
    delay: np.ndarray  # (T,) int: steps until the chunk requested here merged; -1 if none arrived
    chunk: np.ndarray  # (T,) int: id of the chunk the executed action came from, -1 on stalls
    reward: np.ndarray  # (T,)
    success: np.ndarray  # (T,) bool info["success"] after the step
    delay_hint: np.ndarray | None = None  # (T,) int: d told to the policy with the request, -1 if none
    base_actions: np.ndarray | None = None  # (T, A) popped actions before the step hook (None: no hook)


@dataclass
class Rollout:
    seed: int
    success: bool
    steps: int
    steps_to_success: int | None  # control steps until info["success"] first fired
    episode_return: float
    inferences: int
    stall_steps: int
    trace: StepTrace | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkRequest:
    """What goes to the policy for one chunk: the observation of step ``timestep`` and the prefix."""

    request_id: int
    timestep: int
    observation: Observation
    prefix: Prefix | None
    must_go: bool
    delay_hint: int


class ChunkController:
    """Trigger, prefix, merge, pop/idle and trace for one robot (see module doc)."""

    def __init__(
        self,
        config: ExecutionConfig,
        action_dim: int,
        idle_action: Callable[[], np.ndarray],
        *,
        prefix_length: int | None = None,
        timeout_steps: int | None = None,
        step_hook: StepHook | None = None,
    ) -> None:
        if action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        if timeout_steps is not None and timeout_steps <= 0:
            raise ValueError(f"timeout_steps must be positive, got {timeout_steps}")
        self.config = config
        self.action_dim = action_dim
        self.idle_action = idle_action
        self.prefix_length = prefix_length if config.prefix else None
        self.timeout_steps = timeout_steps
        self.step_hook = step_hook
        self.queue = ActionQueue(config.aggregate_fn_name, action_dim=action_dim, **config.aggregate_params())
        self.filter = ObservationFilter(config.observation_filter, config.observation_filter_atol)
        self._sync = config.strategy == "sync"
        self.reset()

    # ------------------------------------------------------------------ episode state
    def reset(self) -> None:
        self.queue.reset()
        self.filter.reset()
        self._ids = itertools.count(1)
        self._pending: dict[int, int] = {}  # request id -> step it was requested at (incl. given up)
        self._in_flight: int | None = None
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_DELAYS)
        self._prev_chunk = -1
        self._t = 0
        self._actions: list[np.ndarray] = []
        self._stall: list[bool] = []
        self._seam: list[bool] = []
        self._qlen: list[int] = []
        self._chunk: list[int] = []
        self._base: list[np.ndarray] = []  # popped actions before the step hook (hook only)
        self._origin: list[tuple[int, int]] = []  # chunk id -> (first label, request step)
        self._reward: list[float] = []
        self._success: list[bool] = []
        self._requests: dict[int, int] = {}  # step -> delay hint
        self._delays: dict[int, int] = {}  # step -> experienced delay
        self.steps_to_success: int | None = None
        self.errors: list[str] = []
        self.unmatched = 0  # replies to no request of this episode
        self.must_go_requests = 0

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def estimated_delay(self) -> int:
        """max(last 3 experienced delays), 0 before the first chunk arrived."""
        return max(self._recent, default=0)

    # ------------------------------------------------------------------ 1. arrival
    def arrive(self, request_id: int, chunk: np.ndarray, now: int) -> bool:
        """Merge the chunk answering ``request_id`` at step ``now``; False if it answers nothing."""
        step = self._pending.pop(request_id, None)
        if step is None:
            self.unmatched += 1
            return False
        if self._in_flight == request_id:
            self._in_flight = None
        chunk = self._checked(chunk)
        first = now if self._sync else step  # sync: the robot idled until the chunk came
        self.queue.merge(chunk, first, arrival_timestep=now)
        self._origin.append((int(first), int(step)))  # the queue numbers chunks 0, 1, ... per episode
        d = int(now) - step
        self._delays[step] = d
        self._recent.append(d)
        return True

    def fail(self, request_id: int, message: str) -> None:
        """The request will not be answered (server error, broken stream): ask again."""
        self._pending.pop(request_id, None)
        if self._in_flight == request_id:
            self._in_flight = None
        self.errors.append(message)

    def _checked(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim == 3 and chunk.shape[0] == 1:
            chunk = chunk[0]
        if chunk.ndim != 2 or chunk.shape[1] != self.action_dim:
            raise ValueError(f"policy returned a chunk of shape {chunk.shape}, expected (H, {self.action_dim})")
        need = self.config.steps_per_chunk
        if chunk.shape[0] < need:
            raise ValueError(f"policy returned H={chunk.shape[0]} < {need} actions needed")
        return chunk[:need]

    # ------------------------------------------------------------------ 2. request
    def wants_request(self, obs: Observation, now: int) -> bool:
        if self._in_flight is not None:
            asked = self._pending.get(self._in_flight, now)
            if self.timeout_steps is None or now - asked < self.timeout_steps:
                return False
            # Give up waiting; a late reply still merges (its labels say where it belongs).
            self.errors.append(f"request {self._in_flight} unanswered after {now - asked} steps")
            self._in_flight = None
        n = len(self.queue)
        if self._sync:
            return n == 0
        if not should_send_observation(n, self.config.actions_per_chunk, self.config.chunk_size_threshold):
            return False
        state = obs.get(OBS_STATE)
        if state is None:
            return True
        return self.filter.accept(state, is_must_go=must_go(n))

    def request(self, obs: Observation, now: int, delay: int | None = None) -> ChunkRequest:
        """Register a request for step ``now``; ``delay``: the exact delay if the caller knows it."""
        if delay is None or self.config.prefix_delay == "estimated":
            delay = self.estimated_delay()
        if delay < 0:
            raise ValueError(f"delay must be >= 0 control steps, got {delay}")
        prefix = None
        if self.prefix_length is not None:
            prefix = prefix_of(self.queue.contiguous_from(now), self.prefix_length, delay, self.action_dim)
        rid = next(self._ids)
        self._pending[rid] = int(now)
        self._in_flight = rid
        self._requests[int(now)] = int(delay)
        empty = len(self.queue) == 0
        self.must_go_requests += empty
        return ChunkRequest(rid, int(now), obs, prefix, must_go=empty, delay_hint=int(delay))

    # ------------------------------------------------------------------ 3. execute
    def execute(self, now: int, obs: Observation | None = None) -> np.ndarray:
        """The action for step ``now`` (the idle action when nothing is queued for it).

        With a ``step_hook`` the popped action goes through ``hook(obs, action, context)``
        (``obs`` is then required: the observation of step ``now``)."""
        self._qlen.append(len(self.queue))
        ta = self.queue.pop(now=now)
        if ta is None:
            action = np.asarray(self.idle_action(), dtype=np.float32)
            self._stall.append(True)
            self._seam.append(False)
            self._chunk.append(-1)
        else:
            action = ta.action
            self._stall.append(False)
            self._seam.append(self._prev_chunk >= 0 and ta.chunk != self._prev_chunk)
            self._chunk.append(ta.chunk)
            self._prev_chunk = ta.chunk
        if self.step_hook is not None:
            self._base.append(action)
            if ta is not None:  # a stall's idle action is not corrected
                if obs is None:
                    raise ValueError("a step hook needs the step's observation: execute(now, obs)")
                first, asked = self._origin[ta.chunk]
                ctx = StepContext(int(now) - first, int(now) - asked, self.config.actions_per_chunk)
                action = np.asarray(self.step_hook(obs, action, ctx), dtype=np.float32)
        self._actions.append(action)
        self._t = int(now) + 1
        return action

    # ------------------------------------------------------------------ 4. outcome
    def record_outcome(self, reward: float, success: bool) -> None:
        self._reward.append(float(reward))
        self._success.append(bool(success))
        if success and self.steps_to_success is None:
            self.steps_to_success = len(self._success)

    # ------------------------------------------------------------------ records
    @property
    def inferences(self) -> int:
        return len(self._requests)

    def trace(self) -> StepTrace:
        n = len(self._actions)
        request = np.zeros(n, dtype=bool)
        delay = np.full(n, -1, dtype=np.int32)
        hint = np.full(n, -1, dtype=np.int32)
        for t, d in self._requests.items():
            if t < n:
                request[t] = True
                hint[t] = d
        for t, d in self._delays.items():
            if t < n:
                delay[t] = d
        actions = np.stack(self._actions) if n else np.zeros((0, self.action_dim), dtype=np.float32)
        return StepTrace(
            actions=actions.astype(np.float32, copy=False),
            stall=np.asarray(self._stall, dtype=bool),
            seam=np.asarray(self._seam, dtype=bool),
            queue_len=np.asarray(self._qlen, dtype=np.int32),
            request=request,
            delay=delay,
            chunk=np.asarray(self._chunk, dtype=np.int32),
            reward=np.asarray(self._reward[:n], dtype=np.float64),
            success=np.asarray(self._success[:n], dtype=bool),
            delay_hint=hint,
            base_actions=None if self.step_hook is None else (
                np.stack(self._base).astype(np.float32, copy=False) if n
                else np.zeros((0, self.action_dim), dtype=np.float32)),
        )

    def rollout(self, seed: int, record_trace: bool = True, **info: Any) -> Rollout:
        n = len(self._actions)
        return Rollout(
            seed=int(seed),
            success=self.steps_to_success is not None,
            steps=n,
            steps_to_success=self.steps_to_success,
            episode_return=float(np.sum(self._reward[:n])),
            inferences=self.inferences,
            stall_steps=int(sum(self._stall)),
            trace=self.trace() if record_trace else None,
            info={"expired": self.queue.expired, **info},
        )
