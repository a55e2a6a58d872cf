"""Env adapters: every simulator (MetaWorld, LIBERO, ...) is seen through this interface.

Env quirks (camera flips, state layout, success flags, idle action) stay inside adapters.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import draccus
import numpy as np

from chunkwise.types import FeatureSpec, Observation


@dataclass
class EnvConfig(draccus.ChoiceRegistry, abc.ABC):
    """Base config; subclasses register with ``@EnvConfig.register_subclass("name")``."""

    task: str = ""
    fps: float = 80.0
    max_episode_steps: int = 500

    @property
    def type(self) -> str:
        return self.get_choice_name(self.__class__)

    @classmethod
    def default_choice_name(cls) -> str | None:
        # `--env.task=push-v3` without `--env.type` means MetaWorld, the embedded default.
        return "metaworld"

    @abc.abstractmethod
    def make(self) -> "ChunkEnv": ...


class ChunkEnv(abc.ABC):
    """A single environment in LeRobot observation format.

    ``step`` returns ``(obs, reward, terminated, truncated, info)`` with ``info["success"]``
    a bool. ``idle_action()`` is what the robot does while no action is available (stall).
    """

    task: str
    fps: float
    max_episode_steps: int
    action_dim: int
    observation_spec: dict[str, FeatureSpec]

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Observation: ...

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]: ...

    @abc.abstractmethod
    def idle_action(self) -> np.ndarray: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "ChunkEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
