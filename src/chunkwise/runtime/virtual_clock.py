"""Deterministic execution of a chunk policy under inference delay, on a virtual clock.

Time is counted in control steps; there is no wall clock anywhere, so the same seed gives
the same rollout on any machine. Per step t (DESIGN.md "Virtual-clock semantics"):

    1. arrival:  a chunk requested at step s with delay d is merged at t = s + d
                 (labels s .. s+H-1; labels < t are stale and dropped)
    2. request:  if nothing is in flight and the trigger fires, obs_t is captured and
                 ``predict_chunk`` runs *now* (on the state at t); its delay d is drawn
                 from the delay model; with d = 0 it is merged at once
    3. execute:  ``queue.pop(now=t)``; an empty queue (or hole) => env.idle_action(),
                 counted as a stall
    4. env.step

At most one request is in flight at a time (as in LeRobot's client: the next
observation is only sent after the previous chunk came back; a new request can go out at
the very step the previous chunk arrives), so requests never overlap and there are at
most ceil(steps / max(d, 1)) inferences per episode.

Timeline, async, H = actions_per_chunk = 6, g = 0.5, d = 2 (asserted in
tests/runtime/test_virtual_clock.py)::

    t          0   1   2   3   4   5   6   7   8
    queue_len  0   0   4   3   2   4   3   2   4     (after arrivals, before the pop)
    request    o0          o3          o6            (len/6 <= 0.5, nothing in flight)
    arrival            c0          c1          c2    (c1 labels 3..8: 3,4 stale, 5 merged)
    executed   -   -   c0  c0  c0  c1  c1  c1  c2    (chunk whose plan ran at t)
    stall      x   x
    seam                           ^           ^     (first action of a newer chunk)

``sync`` relabels nothing as stale: the robot is blocked (idle) while the chunk is
computed, so the chunk's first action runs at the arrival step t + d.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chunkwise.envs.base import ChunkEnv
from chunkwise.policies.base import Policy
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.scheduling.delay import DelayModel, FixedDelay
from chunkwise.scheduling.queue import ActionQueue
from chunkwise.scheduling.trigger import ObservationFilter, must_go, should_send_observation
from chunkwise.types import OBS_STATE, Prefix, stack_observations


@dataclass
class StepTrace:
    """Per-step record of one episode (arrays of length T = steps run)."""

    actions: np.ndarray  # (T, A) what was sent to the env (idle action on stalls)
    stall: np.ndarray  # (T,) bool: no queued action, env idled
    seam: np.ndarray  # (T,) bool: first executed action of a newer chunk than the previous step's
    queue_len: np.ndarray  # (T,) queued actions at the step (after arrivals, before the pop)
    request: np.ndarray  # (T,) bool: an observation was captured and a chunk requested
    delay: np.ndarray  # (T,) int: delay of the request made at this step, -1 if none
    chunk: np.ndarray  # (T,) int: id of the chunk the executed action came from, -1 on stalls
    reward: np.ndarray  # (T,)
    success: np.ndarray  # (T,) bool info["success"] after the step


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


@dataclass
class _InFlight:
    chunk: np.ndarray  # (k, A) kept actions
    first_label: int
    arrival: int


class VirtualClockExecutor:
    """Runs episodes of ``env`` with ``policy`` under ``delay`` (see module doc)."""

    def __init__(
        self,
        env: ChunkEnv,
        policy: Policy,
        config: ExecutionConfig,
        delay: DelayModel | int = 0,
    ) -> None:
        self.env = env
        self.policy = policy
        self.config = config
        self.delay: DelayModel = FixedDelay(delay) if isinstance(delay, int) else delay
        meta = policy.metadata
        config.check_chunk_size(meta.chunk_size)
        if meta.action_dim != env.action_dim:
            raise ValueError(f"policy action_dim {meta.action_dim} != env action_dim {env.action_dim}")
        self.queue = ActionQueue(config.aggregate_fn_name, action_dim=env.action_dim, **config.aggregate_params())
        self.filter = ObservationFilter(config.observation_filter, config.observation_filter_atol)
        self._use_prefix = bool(config.prefix and meta.uses_prefix)

    # ------------------------------------------------------------------ helpers
    def _wants_observation(self, obs: dict[str, Any]) -> bool:
        n = len(self.queue)
        if self.config.strategy == "sync":
            return n == 0  # whole chunk (n_action_steps) used up
        if not should_send_observation(n, self.config.actions_per_chunk, self.config.chunk_size_threshold):
            return False
        state = obs.get(OBS_STATE)
        if state is None:
            return True
        return self.filter.accept(state, is_must_go=must_go(n))

    def _predict(self, obs: dict[str, Any], t: int, d: int) -> np.ndarray:
        prefix = None
        if self._use_prefix:
            queued = self.queue.contiguous_from(t)
            if queued is None:
                queued = np.zeros((0, self.env.action_dim), dtype=np.float32)
            prefix = [Prefix(actions=queued, delay=d)]
        out = np.asarray(self.policy.predict_chunk(stack_observations([obs]), prefix=prefix), dtype=np.float32)
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] != self.env.action_dim:
            raise ValueError(f"policy returned chunk of shape {out.shape}, expected (1, H, {self.env.action_dim})")
        if out.shape[1] < self.config.steps_per_chunk:
            raise ValueError(f"policy returned H={out.shape[1]} < {self.config.steps_per_chunk} actions needed")
        return out[0, : self.config.steps_per_chunk]

    # ------------------------------------------------------------------ episode
    def run_episode(self, seed: int) -> Rollout:
        cfg, env = self.config, self.env
        max_steps = cfg.max_steps or env.max_episode_steps
        # delays are drawn from their own stream so they do not depend on env/policy RNG use
        rng = np.random.default_rng([int(seed), 0xDE1A])
        obs = env.reset(seed=seed)
        self.policy.reset()
        self.queue.reset()
        self.filter.reset()
        in_flight: _InFlight | None = None

        a_dim = env.action_dim
        actions = np.zeros((max_steps, a_dim), dtype=np.float32)
        stall = np.zeros(max_steps, dtype=bool)
        seam = np.zeros(max_steps, dtype=bool)
        qlen = np.zeros(max_steps, dtype=np.int32)
        request = np.zeros(max_steps, dtype=bool)
        delays = np.full(max_steps, -1, dtype=np.int32)
        chunk_ids = np.full(max_steps, -1, dtype=np.int32)
        rewards = np.zeros(max_steps, dtype=np.float64)
        successes = np.zeros(max_steps, dtype=bool)

        inferences = 0
        steps_to_success: int | None = None
        prev_chunk = -1
        t = 0
        while t < max_steps:
            # 1. arrival
            if in_flight is not None and in_flight.arrival == t:
                self.queue.merge(in_flight.chunk, in_flight.first_label, arrival_timestep=t)
                in_flight = None
            # 2. request (at most one in flight)
            if in_flight is None and self._wants_observation(obs):
                d = int(self.delay.sample(rng))
                if d < 0:
                    raise ValueError(f"delay model returned a negative delay {d}")
                chunk = self._predict(obs, t, d)
                inferences += 1
                request[t] = True
                delays[t] = d
                # sync: the robot is blocked while waiting, so the chunk starts at arrival
                first = t + d if cfg.strategy == "sync" else t
                if d == 0:
                    self.queue.merge(chunk, first, arrival_timestep=t)
                else:
                    in_flight = _InFlight(chunk, first, t + d)
            # 3. execute
            qlen[t] = len(self.queue)
            ta = self.queue.pop(now=t)
            if ta is None:
                action = np.asarray(env.idle_action(), dtype=np.float32)
                stall[t] = True
            else:
                action = ta.action
                chunk_ids[t] = ta.chunk
                seam[t] = prev_chunk >= 0 and ta.chunk != prev_chunk
                prev_chunk = ta.chunk
            actions[t] = action
            # 4. env
            obs, reward, terminated, truncated, info = env.step(action)
            rewards[t] = float(reward)
            successes[t] = bool(info.get("success", False))
            if successes[t] and steps_to_success is None:
                steps_to_success = t + 1
            t += 1
            if terminated or truncated:
                break

        n = t
        trace = None
        if cfg.record_trace:
            trace = StepTrace(
                actions[:n], stall[:n], seam[:n], qlen[:n], request[:n], delays[:n],
                chunk_ids[:n], rewards[:n], successes[:n],
            )
        return Rollout(
            seed=int(seed),
            success=steps_to_success is not None,
            steps=n,
            steps_to_success=steps_to_success,
            episode_return=float(rewards[:n].sum()),
            inferences=inferences,
            stall_steps=int(stall[:n].sum()),
            trace=trace,
            info={"expired": self.queue.expired},
        )
