"""Dataset statistics as module buffers: normalize inputs, unnormalize outputs.

Modes per key:

    mean_std:  x_n = (x - mean) / std            x = x_n * std + mean
    min_max:   x_n = 2 (x - min) / (max - min) - 1   (maps [min, max] to [-1, 1])
    identity:  x_n = x

Near-constant dimensions (std or range below ``eps``) get a scale of 1 so that a
dimension that never moved in the demos cannot blow up at test time.
Stats live in buffers named ``<key with dots as '__'>.<stat>`` so they are saved with the
weights (``state_dict``) and also as a standalone ``stats.safetensors``.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
import torch
from torch import nn

NormMode = Literal["mean_std", "min_max", "identity"]
_MODES = ("mean_std", "min_max", "identity")


def _buf(key: str, stat: str) -> str:
    return key.replace(".", "__") + "__" + stat


class Normalizer(nn.Module):
    """Holds stats for a set of keys; ``normalize`` / ``unnormalize`` one key at a time."""

    def __init__(
        self,
        stats: Mapping[str, Mapping[str, np.ndarray]],
        modes: Mapping[str, NormMode],
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.modes = dict(modes)
        self.eps = eps
        for key, mode in self.modes.items():
            if mode not in _MODES:
                raise ValueError(f"normalization mode for {key!r} must be one of {_MODES}, got {mode!r}")
            if mode == "identity":
                continue
            if key not in stats:
                raise KeyError(f"dataset stats have no entry for {key!r} (have {sorted(stats)})")
            needed = ("mean", "std") if mode == "mean_std" else ("min", "max")
            for stat in needed:
                if stat not in stats[key]:
                    raise KeyError(f"dataset stats for {key!r} lack {stat!r} (needed by mode {mode!r})")
                value = torch.as_tensor(np.asarray(stats[key][stat], dtype=np.float32))
                self.register_buffer(_buf(key, stat), value.clone())

    def _scale_shift(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        mode = self.modes[key]
        if mode == "mean_std":
            mean, std = getattr(self, _buf(key, "mean")), getattr(self, _buf(key, "std"))
            scale = torch.where(std < self.eps, torch.ones_like(std), std)
            return scale, mean
        lo, hi = getattr(self, _buf(key, "min")), getattr(self, _buf(key, "max"))
        rng = hi - lo
        half = torch.where(rng < self.eps, torch.ones_like(rng), rng / 2)
        return half, (hi + lo) / 2

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.modes.get(key, "identity") == "identity":
            return x
        scale, shift = self._scale_shift(key)
        return (x - shift) / scale

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.modes.get(key, "identity") == "identity":
            return x
        scale, shift = self._scale_shift(key)
        return x * scale + shift

    def stats_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """Buffers back as ``{key: {stat: array}}`` (what the checkpoint's stats file holds)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, mode in self.modes.items():
            if mode == "identity":
                continue
            for stat in ("mean", "std") if mode == "mean_std" else ("min", "max"):
                out.setdefault(key, {})[stat] = getattr(self, _buf(key, stat)).detach().cpu().numpy()
        return out


def flatten_stats(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{key: {stat: arr}}`` -> ``{"key/stat": arr}`` for safetensors."""
    return {f"{k}/{s}": np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, d in stats.items() for s, v in d.items()}


def unflatten_stats(flat: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, arr in flat.items():
        key, _, stat = name.rpartition("/")
        out.setdefault(key, {})[stat] = np.asarray(arr, dtype=np.float32)
    return out
