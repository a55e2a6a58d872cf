"""The contracts everything else is written against (numpy only, the lowest layer).

* ``Policy``: ``predict_chunk(obs_batch, prefix=None) -> (B, H, A) float32``, ``metadata``,
  ``reset()``. A local model, the scripted oracle and a ``RemotePolicy`` all are one.
* ``PrefixModes``: a policy that can be switched to a prefix-aware mode
  (``with_prefix_mode(mode)``; the modes are ``metadata.prefix_modes``).
* ``ChunkEnv``: one environment in LeRobot observation format.
* ``Snapshotable`` / ``HasExpert``: what the scripted oracle and data collection need of
  an env (a bit-exact snapshot of the simulator; a scripted expert action).

Observations, ``PolicyMetadata`` and ``Prefix`` are in ``chunkwise.types``.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from chunkwise.types import FeatureSpec, Observation, ObservationBatch, PolicyMetadata, Prefix


@runtime_checkable
class Policy(Protocol):
    """``predict_chunk(obs_batch, prefix) -> (B, H, A) float32``.

    ``prefix`` is None or a sequence of length B whose items are ``Prefix`` or None:
    the queued actions and the inference delay for each batch element. Policies that
    cannot use it ignore it (``metadata.prefix_length`` is None).
    """

    @property
    def metadata(self) -> PolicyMetadata: ...

    def predict_chunk(
        self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None
    ) -> np.ndarray: ...

    def reset(self) -> None: ...


@runtime_checkable
class PrefixModes(Protocol):
    """A policy with prefix-aware modes (``metadata.prefix_modes``), e.g. RTC."""

    def with_prefix_mode(self, mode: str) -> Policy: ...


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


@runtime_checkable
class Snapshotable(Protocol):
    """An env whose full simulator state can be saved and put back bit for bit."""

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...


@runtime_checkable
class HasExpert(Protocol):
    """An env with a scripted expert: the action it would take now (or for ``obs``)."""

    def expert_action(self, obs: Any = None) -> np.ndarray: ...
