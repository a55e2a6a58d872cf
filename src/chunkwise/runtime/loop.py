"""The one control loop: a ``ChunkController`` driven by a transport and a clock.

Per control step t (the same on both clocks)::

    arrivals = transport.poll(t)           chunks that came back by step t -> controller.arrive
    obs      = observe()
    if controller.wants_request(obs, t):   request + prefix -> transport.send
        (a chunk the transport already has, e.g. d = 0, merges before the pop)
    action   = controller.execute(t, obs)  pop or idle, then the optional per-step hook on obs
    reward, success, done = act(action)    env / robot step
    clock.wait(t + 1)                      virtual: nothing; wall: sleep to the next tick

Transports:

* ``LocalTransport(policy, delay_model)`` - the virtual clock: ``predict_chunk`` runs when
  the request is sent (on the state at t), and its chunk is handed back at t + d, with d
  drawn from the delay model (its own RNG stream, seeded by the episode).
* ``clients.realtime.StreamTransport`` - a PolicyServer session stream: replies are handed
  back at the first tick after they arrived, so d is whatever the network and the model
  really took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from chunkwise.contracts import Policy
from chunkwise.scheduling.controller import ChunkController, ChunkRequest
from chunkwise.scheduling.delay import DelayModel
from chunkwise.types import Observation, stack_observations


@dataclass(frozen=True)
class Arrival:
    """A transport's answer to one request: a chunk, or an error (then ``chunk`` is None)."""

    request_id: int
    chunk: np.ndarray | None
    error: str | None = None


class Transport(Protocol):
    def start_episode(self, seed: int) -> None: ...

    def known_delay(self) -> int | None:
        """The delay the next request will have, if the transport knows it (virtual clock)."""

    def send(self, request: ChunkRequest) -> None: ...

    def poll(self, now: int) -> Sequence[Arrival]: ...


class Clock(Protocol):
    def start(self) -> None: ...

    def wait(self, tick: int) -> None: ...


class VirtualTicks:
    """The virtual clock: steps follow each other at once."""

    def start(self) -> None:
        pass

    def wait(self, tick: int) -> None:
        pass


class WallTicks:
    """Tick k starts at ``t0 + k * dt`` on this process's monotonic clock."""

    def __init__(self, dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"tick length must be positive, got {dt}")
        self.dt = dt
        self.overruns = 0  # ticks where the loop was already late
        self._t0 = time.monotonic()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.overruns = 0

    def wait(self, tick: int) -> None:
        sleep = self._t0 + tick * self.dt - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
        else:
            self.overruns += 1


def _deliver(controller: ChunkController, arrivals: Sequence[Arrival], now: int) -> None:
    for a in arrivals:
        if a.chunk is None:
            controller.fail(a.request_id, a.error or "no chunk")
        else:
            controller.arrive(a.request_id, a.chunk, now)


def run_loop(
    controller: ChunkController,
    transport: Transport,
    observe: Callable[[], Observation],
    act: Callable[[np.ndarray], tuple[float, bool, bool]],
    max_steps: int,
    clock: Clock | None = None,
) -> None:
    """Run up to ``max_steps`` control steps (see module doc); ``act`` -> (reward, success, done)."""
    clock = clock or VirtualTicks()
    clock.start()
    for t in range(max_steps):
        _deliver(controller, transport.poll(t), t)
        obs = observe()
        if controller.wants_request(obs, t):
            transport.send(controller.request(obs, t, transport.known_delay()))
            _deliver(controller, transport.poll(t), t)
        reward, success, done = act(controller.execute(t, obs))
        controller.record_outcome(reward, success)
        if done:
            break
        clock.wait(t + 1)


class EnvSteps:
    """``observe`` / ``act`` over a ChunkEnv; the episode ends on terminated or truncated."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.obs: Observation = {}

    def reset(self, seed: int) -> None:
        self.obs = self.env.reset(seed=seed)

    def observe(self) -> Observation:
        return self.obs

    def act(self, action: np.ndarray) -> tuple[float, bool, bool]:
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        return float(reward), bool(info.get("success", False)), bool(terminated or truncated)


class LocalTransport:
    """The virtual clock's transport: a local policy whose chunk comes back d steps later."""

    def __init__(self, policy: Policy, delay: DelayModel) -> None:
        self.policy = policy
        self.delay = delay
        self._pending: list[tuple[int, Arrival]] = []
        self._next: int | None = None
        self._rng = np.random.default_rng(0)

    def start_episode(self, seed: int) -> None:
        # Delays have their own stream so that they do not depend on env/policy RNG use.
        self._rng = np.random.default_rng([int(seed), 0xDE1A])
        reset = getattr(self.delay, "reset", None)
        if reset is not None:  # delay models with per-episode state (ReplayDelay)
            reset(int(seed))
        self._pending = []
        self._next = None
        self.policy.reset()

    def known_delay(self) -> int:
        d = int(self.delay.sample(self._rng))
        if d < 0:
            raise ValueError(f"delay model returned a negative delay {d}")
        self._next = d
        return d

    def send(self, request: ChunkRequest) -> None:
        d = self.known_delay() if self._next is None else self._next
        self._next = None
        prefix = None if request.prefix is None else [request.prefix]
        out = np.asarray(self.policy.predict_chunk(stack_observations([request.observation]), prefix=prefix))
        if out.ndim != 3 or out.shape[0] != 1:
            raise ValueError(f"policy returned chunk of shape {out.shape}, expected (1, H, A)")
        self._pending.append((request.timestep + d, Arrival(request.request_id, out[0])))

    def poll(self, now: int) -> list[Arrival]:
        due = [a for at, a in self._pending if at <= now]
        if due:
            self._pending = [(at, a) for at, a in self._pending if at > now]
        return due
