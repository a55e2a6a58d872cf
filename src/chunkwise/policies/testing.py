"""Small deterministic policies for tests and serving benchmarks (no checkpoint needed).

``chunkwise serve --policy.type=echo|mlp|expert`` builds one of these from flags
(:class:`TestPolicyConfig`), so benchmarks and end-to-end tests run a real server
without training anything.

* :class:`EchoPolicy` -- ``actions[b, i] = state[b, :A]`` with ``actions[b, i, 0] += i``.
  If the client puts the timestep t in ``state[0]``, the action labelled t+i carries
  t+i in its first coordinate, so tests can check every executed action's label.
  When a prefix is given, rows ``0..N-1`` are the action context verbatim (bit exact),
  which proves the context reached the policy unchanged.
* :class:`MLPPolicy` -- a small torch MLP with a fixed per-call latency floor
  (``model_ms``) standing in for an accelerator whose forward time is nearly independent
  of small batch sizes.
* :class:`ExpertPolicy` -- the MetaWorld scripted expert evaluated on
  ``observation.state``; the chunk repeats that action (it needs no env in the server).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np

from chunkwise.types import OBS_STATE, FeatureSpec, ObservationBatch, PolicyMetadata, Prefix, image_key


@dataclass
class TestPolicyConfig:
    """Flags of ``--policy.type=...`` test policies."""

    __test__ = False  # not a pytest test class despite the name

    type: Literal["echo", "mlp", "expert"] = "echo"
    state_dim: int = 8
    action_dim: int = 4
    chunk_size: int = 10
    fps: float = 30.0
    cameras: int = 0  # number of uint8 (image_size, image_size, 3) cameras in the spec
    image_size: int = 224
    # None: no prefix; 0: the whole queue; N: the next N queued actions (PolicyMetadata)
    prefix_length: int | None = None
    model_ms: float = 0.0  # minimum wall time of one predict_chunk call (mlp/echo)
    hidden: int = 256
    task: str = "push-v3"  # expert: MetaWorld task whose scripted policy to run

    def __post_init__(self) -> None:
        valid = ("echo", "mlp", "expert")
        if self.type not in valid:
            raise ValueError(f"policy.type={self.type!r} is not a test policy; choose one of {valid}")
        for name in ("state_dim", "action_dim", "chunk_size", "image_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"policy.{name} must be positive, got {getattr(self, name)}")
        if self.cameras < 0 or self.model_ms < 0 or (self.prefix_length is not None and self.prefix_length < 0):
            raise ValueError("policy.cameras, policy.model_ms, policy.prefix_length must be >= 0")
        if self.type == "echo" and self.state_dim < self.action_dim:
            raise ValueError(f"echo policy needs state_dim >= action_dim, got {self.state_dim} < {self.action_dim}")

    def observation_spec(self) -> dict[str, FeatureSpec]:
        spec = {OBS_STATE: FeatureSpec((self.state_dim,), "float32")}
        for c in range(self.cameras):
            spec[image_key(f"cam{c}")] = FeatureSpec((self.image_size, self.image_size, 3), "uint8")
        return spec


def _sleep_until(t_end: float) -> None:
    remaining = t_end - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


@dataclass
class EchoPolicy:
    cfg: TestPolicyConfig = field(default_factory=TestPolicyConfig)

    def __post_init__(self) -> None:
        # The most recent prefixes received (tests inspect them); bounded, so a long-running
        # server does not keep every prefix ever sent.
        self.received_prefixes: collections.deque[Prefix | None] = collections.deque(maxlen=1024)
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=4096)  # bounded as well
        self._metadata = PolicyMetadata(
            observation_spec=self.cfg.observation_spec(),
            action_dim=self.cfg.action_dim,
            chunk_size=self.cfg.chunk_size,
            fps=self.cfg.fps,
            policy_type="echo",
            prefix_length=self.cfg.prefix_length,
        )

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        t_end = time.perf_counter() + self.cfg.model_ms / 1000.0
        state = np.asarray(obs_batch[OBS_STATE], dtype=np.float32)
        b, h, a = state.shape[0], self.cfg.chunk_size, self.cfg.action_dim
        out = np.repeat(state[:, None, :a], h, axis=1).copy()
        out[:, :, 0] += np.arange(h, dtype=np.float32)
        self.batch_sizes.append(b)
        for i in range(b):
            p = prefix[i] if prefix is not None else None
            self.received_prefixes.append(p)
            if p is not None:
                n = min(len(p.actions), h)
                out[i, :n] = p.actions[:n]
        _sleep_until(t_end)
        return out

    def reset(self) -> None:
        self.received_prefixes.clear()


class MLPPolicy(EchoPolicy):
    """state (+ per-camera mean brightness) -> MLP -> (H, A) in tanh range."""

    def __post_init__(self) -> None:
        super().__post_init__()
        import torch

        torch.manual_seed(0)
        in_dim = self.cfg.state_dim + self.cfg.cameras
        out_dim = self.cfg.chunk_size * self.cfg.action_dim
        hid = self.cfg.hidden
        self._torch = torch
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hid), torch.nn.ReLU(),
            torch.nn.Linear(hid, hid), torch.nn.ReLU(),
            torch.nn.Linear(hid, out_dim), torch.nn.Tanh(),
        ).eval()
        self._metadata = PolicyMetadata(**{**self._metadata.__dict__, "policy_type": "mlp"})

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        t_end = time.perf_counter() + self.cfg.model_ms / 1000.0
        torch = self._torch
        feats = [np.asarray(obs_batch[OBS_STATE], dtype=np.float32)]
        for c in range(self.cfg.cameras):
            img = np.asarray(obs_batch[image_key(f"cam{c}")])
            feats.append(img.reshape(img.shape[0], -1)[:, ::97].mean(axis=1, keepdims=True).astype(np.float32) / 255.0)
        x = torch.from_numpy(np.concatenate(feats, axis=1))
        with torch.inference_mode():
            y = self.net(x).numpy()
        self.batch_sizes.append(len(y))
        _sleep_until(t_end)
        return y.reshape(len(y), self.cfg.chunk_size, self.cfg.action_dim).astype(np.float32)


class ExpertPolicy(EchoPolicy):
    """MetaWorld scripted expert on the state; the chunk holds that action H times."""

    def __post_init__(self) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if self.cfg.task not in ENV_POLICY_MAP:
            raise ValueError(f"no MetaWorld scripted policy for task {self.cfg.task!r}")
        self._expert = ENV_POLICY_MAP[self.cfg.task]()
        # MetaWorld v3: 39-d state, 4-d action, 80 fps.
        self.cfg = replace(self.cfg, state_dim=39, action_dim=4, fps=80.0)
        super().__post_init__()
        self._metadata = PolicyMetadata(**{**self._metadata.__dict__, "policy_type": "expert"})

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        t_end = time.perf_counter() + self.cfg.model_ms / 1000.0
        state = np.asarray(obs_batch[OBS_STATE], dtype=np.float64)
        acts = np.stack([np.clip(self._expert.get_action(s), -1.0, 1.0) for s in state]).astype(np.float32)
        _sleep_until(t_end)
        return np.repeat(acts[:, None, :], self.cfg.chunk_size, axis=1)


class LatencyFloor:
    """``policy`` whose ``predict_chunk`` takes at least ``model_ms`` of wall time.

    ``chunkwise serve --policy.path=... --policy.model_ms=50`` uses it to stand in for a
    slower accelerator (e.g. to measure how a strategy fares at a given latency); the
    outputs are the policy's own."""

    def __init__(self, policy: Any, model_ms: float) -> None:
        if model_ms < 0:
            raise ValueError(f"model_ms must be >= 0, got {model_ms}")
        self.policy, self.model_ms = policy, float(model_ms)

    @property
    def metadata(self) -> PolicyMetadata:
        return self.policy.metadata

    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        t_end = time.perf_counter() + self.model_ms / 1000.0
        out = self.policy.predict_chunk(obs_batch, prefix)
        _sleep_until(t_end)
        return out

    def with_prefix_mode(self, mode: str) -> "LatencyFloor":
        return LatencyFloor(self.policy.with_prefix_mode(mode), self.model_ms)

    def reset(self) -> None:
        self.policy.reset()


def make_test_policy(cfg: TestPolicyConfig) -> EchoPolicy:
    return {"echo": EchoPolicy, "mlp": MLPPolicy, "expert": ExpertPolicy}[cfg.type](cfg)
