"""Env adapters: every simulator (MetaWorld, LIBERO, ...) is seen through this interface.

Env quirks (camera flips, state layout, success flags, idle action) stay inside adapters.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
import draccus

from chunkwise.contracts import ChunkEnv

__all__ = ["ChunkEnv", "EnvConfig"]  # ChunkEnv is a contract (chunkwise.contracts)


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

