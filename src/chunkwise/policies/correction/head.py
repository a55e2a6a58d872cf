"""The correction head: features, residual targets, a numpy forward pass, checkpoints.

Inference is plain numpy (three small matmuls): no torch call on the control path, so a
step costs microseconds and is bit-for-bit the same in every process that loads the
same file. Training (``train.py``) uses torch and writes the weights here.

Features (standardised with the training set's mean / std)::

    x_t = [s_t, b_t, i_t / H, age_t / H]
    r_t = a*_t - b_t             target: the expert's action at s_t minus the base action
    a_t = clip(b_t + r_hat_t, -1, 1)

``use_base=False`` is the ablation that asks whether the chunk matters at all: b_t is
replaced by 0 in the features and in the sum, so the head is a per-step policy of the latest
state alone (target a*_t), trained on the same rollouts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from chunkwise.common.files import atomic_directory

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
KIND = "correction_head"
CLIP = 5.0  # standardised inputs are clipped to [-CLIP, CLIP]
STD_FLOOR = 0.05  # in raw units: constant features (padding, fixed goals) stay ~0 after standardising


@dataclass
class CorrectionConfig:
    state_dim: int = 39
    action_dim: int = 4
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    horizon: int = 20  # actions_per_chunk the features are normalised by
    task: str = ""
    trained_on: dict = field(default_factory=dict)  # how the data was made (provenance only)
    use_base: bool = True  # False: ablation, the head never sees the base action (see the module doc)

    def __post_init__(self) -> None:
        if self.state_dim <= 0 or self.action_dim <= 0:
            raise ValueError(f"state_dim and action_dim must be positive, got {self.state_dim}, {self.action_dim}")
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {self.hidden}")
        if self.horizon <= 0:
            raise ValueError(f"horizon must be positive, got {self.horizon}")

    @property
    def in_dim(self) -> int:
        return self.state_dim + self.action_dim + 2


def features(state: np.ndarray, base: np.ndarray, index: np.ndarray | int, age: np.ndarray | int,
             horizon: int) -> np.ndarray:
    """(N, S+A+2) float32 rows [s, b, i/H, age/H] (unnormalised); 1-d inputs give one row."""
    state = np.atleast_2d(np.asarray(state, dtype=np.float32))
    base = np.atleast_2d(np.asarray(base, dtype=np.float32))
    n = state.shape[0]
    idx = np.broadcast_to(np.asarray(index, dtype=np.float32), (n,)).reshape(n, 1) / horizon
    ag = np.broadcast_to(np.asarray(age, dtype=np.float32), (n,)).reshape(n, 1) / horizon
    return np.concatenate([state, base, idx, ag], axis=1).astype(np.float32)


def base_input(base: np.ndarray, use_base: bool = True) -> np.ndarray:
    """The base action as the head sees it: itself, or zeros for the ``use_base=False`` ablation."""
    base = np.asarray(base, dtype=np.float32)
    return base if use_base else np.zeros_like(base)


def correction_targets(base: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """r = clip(a*, -1, 1) - b: the residual that turns the stale base action into the expert's."""
    return (np.clip(np.asarray(expert, dtype=np.float32), -1.0, 1.0) - np.asarray(base, dtype=np.float32))


class CorrectionHead:
    """r_hat = denorm(MLP(norm(x))); ``correct`` returns clip(b + r_hat, -1, 1)."""

    def __init__(self, config: CorrectionConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = config
        n_layers = len(config.hidden) + 1
        self.layers = [(np.ascontiguousarray(weights[f"w{i}"], dtype=np.float32),
                        np.ascontiguousarray(weights[f"b{i}"], dtype=np.float32)) for i in range(n_layers)]
        self.x_mean = weights["x_mean"].astype(np.float32)
        self.x_std = weights["x_std"].astype(np.float32)
        self.y_mean = weights["y_mean"].astype(np.float32)
        self.y_std = weights["y_std"].astype(np.float32)
        if self.layers[0][0].shape[0] != config.in_dim or self.layers[-1][0].shape[1] != config.action_dim:
            raise ValueError(f"weights do not match config (in {config.in_dim}, out {config.action_dim})")

    def residual(self, x: np.ndarray) -> np.ndarray:
        # clipped: a feature that barely varied in training must not blow up off-distribution
        h = np.clip((np.atleast_2d(x).astype(np.float32) - self.x_mean) / self.x_std, -CLIP, CLIP)
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self.layers[-1]
        return (h @ w + b) * self.y_std + self.y_mean

    def correct(self, state: np.ndarray, base: np.ndarray, index: int, age: int) -> np.ndarray:
        base = base_input(base, self.config.use_base)
        x = features(state, base, index, age, self.config.horizon)
        out = base + self.residual(x)[0]
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> None:
        """config.json + model.safetensors, written into a temp dir that replaces ``path``."""
        from safetensors.numpy import save_file

        tensors = {"x_mean": self.x_mean, "x_std": self.x_std, "y_mean": self.y_mean, "y_std": self.y_std}
        for i, (w, b) in enumerate(self.layers):
            tensors[f"w{i}"], tensors[f"b{i}"] = w, b
        with atomic_directory(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps({"type": KIND, **asdict(self.config)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "CorrectionHead":
        from safetensors.numpy import load_file

        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a correction head (no {CONFIG_FILE}); train one with "
                                    "python -m chunkwise.eval.correction_train")
        raw = json.loads((path / CONFIG_FILE).read_text())
        if raw.pop("type", None) != KIND:
            raise ValueError(f"{path / CONFIG_FILE} is not a {KIND} config")
        return cls(CorrectionConfig(**raw), load_file(str(path / WEIGHTS_FILE)))

    @classmethod
    def init(cls, config: CorrectionConfig, seed: int = 0) -> "CorrectionHead":
        """Random weights, identity normalisation (tests; training overwrites them)."""
        rng = np.random.default_rng(seed)
        dims = [config.in_dim, *config.hidden, config.action_dim]
        w = {}
        for i in range(len(dims) - 1):
            w[f"w{i}"] = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
            w[f"b{i}"] = np.zeros(dims[i + 1], dtype=np.float32)
        w.update(x_mean=np.zeros(config.in_dim, np.float32), x_std=np.ones(config.in_dim, np.float32),
                 y_mean=np.zeros(config.action_dim, np.float32), y_std=np.ones(config.action_dim, np.float32))
        return cls(config, w)
