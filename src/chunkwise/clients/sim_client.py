"""``SimClient``: a simulated env driven in real time by a remote policy.

``chunkwise eval --server=localhost:8080 --env.task=push-v3 --strategy=rtc_trained
--n_episodes=10`` ends up here (through ``chunkwise.eval.run``). The env steps at its own
fps (times ``time_scale``); inference latency is whatever the server and network really
take, so stalls and stale actions are real, not simulated. The control loop, its rules and
the per-episode record are the virtual clock's (``runtime/loop.py``,
``scheduling/controller.py``); only the transport and the clock differ.
"""

from __future__ import annotations

from typing import Any

from chunkwise.clients.realtime import ChunkClient
from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.envs.base import ChunkEnv
from chunkwise.runtime.loop import EnvSteps
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import Rollout


class SimClient:
    """Runs episodes of a ``ChunkEnv`` against a PolicyServer (wall clock, real latency)."""

    def __init__(
        self,
        env: ChunkEnv,
        remote: RemotePolicy,
        execution: ExecutionConfig,
        *,
        time_scale: float = 1.0,
        request_timeout_s: float = 5.0,
        **client_kwargs: Any,
    ) -> None:
        """``client_kwargs`` go to ``ChunkClient`` (a test transport and clock)."""
        md = remote.metadata
        if md.action_dim != env.action_dim:
            raise ValueError(f"policy action_dim {md.action_dim} != env action_dim {env.action_dim}")
        self.env = env
        self.client = ChunkClient(
            remote, execution, fps=env.fps, time_scale=time_scale, request_timeout_s=request_timeout_s,
            action_dim=env.action_dim, **client_kwargs,
        )

    def run_episode(self, seed: int = 0, max_steps: int | None = None) -> Rollout:
        io = EnvSteps(self.env)
        io.reset(seed)
        steps = max_steps or self.client.execution.max_steps or self.env.max_episode_steps
        return self.client.run_episode(io.observe, io.act, self.env.idle_action, steps, seed=seed)

    def close(self) -> None:
        self.client.close()
