"""Observation, action and policy-metadata contracts (numpy only).

An *observation* is a flat dict with LeRobot's keys::

    "observation.state"          float32 (S,)
    "observation.images.<cam>"   uint8   (H, W, 3)   upright, HWC
    "task"                       str

A *batch* of observations has the same keys with a leading batch dimension on arrays and
a list of strings for ``task``. Actions are float32; a chunk is (H, A), a batch of chunks
(B, H, A).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
OBS_IMAGE_PREFIX = OBS_IMAGES + "."
TASK = "task"
ACTION = "action"
PREFIX_LENGTH = "prefix_length"  # per frame: how many of the next actions are forced (data/branches.py)

Observation = dict[str, Any]
ObservationBatch = dict[str, Any]

_ALLOWED_DTYPES = {"float32", "uint8"}


def image_key(camera: str) -> str:
    return OBS_IMAGE_PREFIX + camera


@dataclass(frozen=True)
class FeatureSpec:
    """Shape and dtype of one observation entry (without the batch dimension)."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} not allowed; use one of {sorted(_ALLOWED_DTYPES)}")


@dataclass(frozen=True)
class PolicyMetadata:
    """What a client needs to know about a policy before sending it anything."""

    observation_spec: Mapping[str, FeatureSpec]
    action_dim: int
    chunk_size: int
    fps: float
    policy_type: str
    # What the policy is told about the queue (one rule for the virtual clock and the server):
    #   None  nothing: predict_chunk is called with prefix=None
    #   0     the whole queue from the observation's step on, and the delay (RTC)
    #   N > 0 the next N queued actions, and the delay (the delta expert's action context)
    prefix_length: int | None = None
    # Prefix-aware modes this policy can be switched to (``with_prefix_mode``), each with the
    # prefix_length it then wants; a server advertises them so a client can ask for one.
    prefix_modes: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {self.action_dim}")
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.prefix_length is not None and self.prefix_length < 0:
            raise ValueError(f"prefix_length must be None (no prefix), 0 (whole queue) or N > 0, got {self.prefix_length}")
        for mode, n in dict(self.prefix_modes).items():
            if int(n) < 0:
                raise ValueError(f"prefix_modes[{mode!r}] must be 0 (whole queue) or N > 0, got {n}")

    @property
    def uses_prefix(self) -> bool:
        """The policy reads the queued actions and the delay (prefix_length is not None)."""
        return self.prefix_length is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["observation_spec"] = {
            k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in self.observation_spec.items()
        }
        d["extra"] = dict(self.extra)
        d["prefix_modes"] = dict(self.prefix_modes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicyMetadata":
        d = dict(d)
        d["observation_spec"] = {
            k: FeatureSpec(tuple(v["shape"]), v["dtype"]) for k, v in d["observation_spec"].items()
        }
        return cls(**d)


def prefix_of(queued: np.ndarray | None, prefix_length: int | None, delay: int, action_dim: int) -> Prefix | None:
    """The prefix a policy with ``prefix_length`` gets from the queued actions (see PolicyMetadata)."""
    if prefix_length is None:
        return None
    if queued is None:
        queued = np.zeros((0, action_dim), dtype=np.float32)
    if prefix_length > 0:
        queued = queued[:prefix_length]
    return Prefix(actions=queued, delay=int(delay))


@dataclass(frozen=True)
class Prefix:
    """What a prefix-aware policy (RTC, delta expert) is told about the queue.

    ``actions[i]`` is the queued action for control step ``obs_timestep + i``: the first
    ``delay`` of them will execute while this chunk is being computed (frozen), the rest
    are the old plan the new chunk may revise. May be shorter than the chunk.

        obs captured            chunk arrives
             t ............ t+d ............ t+H-1
    actions: [ frozen (d) ][ revisable ........ ]
    """

    actions: np.ndarray  # (N, A) float32
    delay: int

    def __post_init__(self) -> None:
        a = np.asarray(self.actions, dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"prefix actions must be (N, A), got shape {a.shape}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")
        object.__setattr__(self, "actions", a)


def check_observation(obs: Mapping[str, Any], spec: Mapping[str, FeatureSpec]) -> None:
    """Raise ValueError naming the first key that is missing or has the wrong shape/dtype."""
    for key, feat in spec.items():
        if key not in obs:
            raise ValueError(f"observation is missing required key {key!r} (has {sorted(obs)})")
        arr = np.asarray(obs[key])
        if tuple(arr.shape) != feat.shape:
            raise ValueError(f"observation[{key!r}] has shape {tuple(arr.shape)}, expected {feat.shape}")
        if arr.dtype != np.dtype(feat.dtype):
            raise ValueError(f"observation[{key!r}] has dtype {arr.dtype}, expected {feat.dtype}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"observation[{key!r}] contains NaN or inf")


def stack_observations(observations: Sequence[Mapping[str, Any]]) -> ObservationBatch:
    """List of single observations -> batch (arrays stacked on axis 0, tasks as a list)."""
    if not observations:
        raise ValueError("cannot stack an empty list of observations")
    keys = observations[0].keys()
    batch: ObservationBatch = {}
    for key in keys:
        if key == TASK:
            batch[TASK] = [str(o.get(TASK, "")) for o in observations]
        else:
            batch[key] = np.stack([np.asarray(o[key]) for o in observations])
    return batch


def unbatch_observation(batch: Mapping[str, Any], i: int) -> Observation:
    return {k: (v[i] if k != TASK else v[i]) for k, v in batch.items()}


def observation_spec_of(obs: Mapping[str, Any]) -> dict[str, FeatureSpec]:
    return {
        k: FeatureSpec(tuple(np.asarray(v).shape), str(np.asarray(v).dtype))
        for k, v in obs.items()
        if k != TASK
    }
