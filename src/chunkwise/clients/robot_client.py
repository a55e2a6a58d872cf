"""``RobotClient``: drive real hardware (or anything robot-shaped) with a remote policy.

The robot is any object with ``get_observation() -> dict`` (LeRobot keys: arrays for
``observation.state`` / ``observation.images.<cam>``; ``task`` is added from the config)
and ``send_action(action: np.ndarray)``. A LeRobot ``Robot`` fits after mapping its
observation keys. ``idle_action()`` is optional: without it, a stall repeats the last
executed action (holding position) instead of sending zeros to real motors.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from chunkwise.clients.realtime import ChunkClient
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.scheduling.controller import Rollout
from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.types import TASK


class Robot(Protocol):
    def get_observation(self) -> dict[str, Any]: ...

    def send_action(self, action: np.ndarray) -> Any: ...


class RobotClient:
    def __init__(
        self, robot: Robot, remote: RemotePolicy, execution: ExecutionConfig, *, task: str = "",
        fps: float | None = None, time_scale: float = 1.0, request_timeout_s: float = 5.0,
    ) -> None:
        self.robot = robot
        self.task = task
        self.client = ChunkClient(remote, execution, fps=fps, time_scale=time_scale, request_timeout_s=request_timeout_s)
        self._last_action = np.zeros(remote.metadata.action_dim, dtype=np.float32)

    def _observe(self) -> dict[str, Any]:
        obs = dict(self.robot.get_observation())
        obs.setdefault(TASK, self.task)
        return obs

    def _idle(self) -> np.ndarray:
        idle = getattr(self.robot, "idle_action", None)
        return np.asarray(idle(), dtype=np.float32) if callable(idle) else self._last_action.copy()

    def _act(self, action: np.ndarray) -> tuple[float, bool, bool]:
        self._last_action = np.asarray(action, dtype=np.float32)
        self.robot.send_action(self._last_action)
        return 0.0, False, False  # a robot has no reward; the episode runs n_steps

    def run(self, n_steps: int, seed: int = 0) -> Rollout:
        """One episode of ``n_steps`` control steps (a new episode id on the server)."""
        return self.client.run_episode(self._observe, self._act, self._idle, max_steps=n_steps, seed=seed)

    def close(self) -> None:
        self.client.close()
