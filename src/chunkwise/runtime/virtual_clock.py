"""Deterministic execution of a chunk policy under inference delay, on a virtual clock.

Time is counted in control steps; there is no wall clock anywhere, so the same seed gives
the same rollout on any machine. The per-step rules are ``ChunkController``'s
(scheduling/controller.py), driven by the one loop of ``runtime/loop.py``, the same loop
``SimClient`` runs against a server; here the transport is local:

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

The step-by-step timeline (H = 6, g = 0.5, d = 2) is in scheduling/controller.py; with
an env it is asserted again in tests/runtime/test_virtual_clock.py.

``sync`` relabels nothing as stale: the robot is blocked (idle) while the chunk is
computed, so the chunk's first action runs at the arrival step t + d.
"""

from __future__ import annotations

from chunkwise.contracts import ChunkEnv, Policy
from chunkwise.runtime.loop import EnvSteps, LocalTransport, run_loop
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import ChunkController, Rollout, StepTrace
from chunkwise.scheduling.delay import DelayModel, FixedDelay

__all__ = ["Rollout", "StepTrace", "VirtualClockExecutor", "check_policy_fits"]


def check_policy_fits(policy: Policy, config: ExecutionConfig, action_dim: int) -> None:
    """Raise if the policy's chunks are too short or of the wrong action dimension."""
    meta = policy.metadata
    config.check_chunk_size(meta.chunk_size)
    if meta.action_dim != action_dim:
        raise ValueError(f"policy action_dim {meta.action_dim} != env action_dim {action_dim}")


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
        check_policy_fits(policy, config, env.action_dim)
        self.controller = ChunkController(
            config, env.action_dim, env.idle_action, prefix_length=policy.metadata.prefix_length,
            step_hook=getattr(policy, "step_hook", None),  # e.g. a correction head (policies/correction)
        )
        self.transport = LocalTransport(policy, self.delay)
        self.queue = self.controller.queue

    def run_episode(self, seed: int) -> Rollout:
        io = EnvSteps(self.env)
        io.reset(seed)
        self.transport.start_episode(seed)
        self.controller.reset()
        run_loop(self.controller, self.transport, io.observe, io.act, self.config.max_steps or self.env.max_episode_steps)
        return self.controller.rollout(seed, record_trace=self.config.record_trace)
