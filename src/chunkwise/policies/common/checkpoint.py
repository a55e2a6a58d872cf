"""Checkpoint directories: ``config.json`` + ``model.safetensors`` + ``stats.safetensors``.

Layout of a policy checkpoint (what ``chunkwise.policies.load(path)`` reads)::

    <dir>/config.json         {"type": "act", "config": {...}, "metadata": {...}, "format_version": 1}
    <dir>/model.safetensors   weights (normalization buffers excluded; they live in stats)
    <dir>/stats.safetensors   dataset stats, "<key>/<stat>" -> float32 array

Every file is written to a temporary name and renamed into place (``os.replace``), and a
whole directory is assembled under a temporary name and renamed, so a crash never leaves
a half-written checkpoint where a reader looks. Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from chunkwise.common.files import atomic_directory, atomic_write_json
from chunkwise.policies.common.normalize import flatten_stats, unflatten_stats
from chunkwise.types import PolicyMetadata

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
STATS_FILE = "stats.safetensors"


def write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj, sort_keys=True)


def save_tensors_atomic(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_torch({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_torch(str(path))


def save_policy_files(
    directory: Path,
    *,
    policy_type: str,
    config: Mapping[str, Any],
    metadata: PolicyMetadata,
    weights: Mapping[str, torch.Tensor],
    stats: Mapping[str, Mapping[str, np.ndarray]],
) -> None:
    """Write the three policy files into an existing (usually temporary) directory."""
    directory = Path(directory)
    write_json_atomic(
        directory / CONFIG_FILE,
        {"type": policy_type, "format_version": FORMAT_VERSION, "config": dict(config), "metadata": metadata.to_dict()},
    )
    save_tensors_atomic(directory / MODEL_FILE, weights)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{STATS_FILE}.", suffix=".tmp")
    os.close(fd)
    save_numpy(flatten_stats(stats), tmp)
    os.replace(tmp, directory / STATS_FILE)


def load_policy_files(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, dict[str, np.ndarray]]]:
    """-> (parsed config.json, weights, stats). Raises FileNotFoundError naming a missing file."""
    directory = Path(directory)
    for name in (CONFIG_FILE, MODEL_FILE, STATS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"checkpoint {directory} is missing {name}")
    cfg = json.loads((directory / CONFIG_FILE).read_text())
    version = cfg.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ValueError(f"{directory}: checkpoint format_version {version} is newer than supported ({FORMAT_VERSION})")
    weights = load_tensors(directory / MODEL_FILE)
    stats = unflatten_stats(load_numpy(str(directory / STATS_FILE)))
    return cfg, weights, stats


class PolicyFilesMixin:
    """Checkpoint writing shared by every torch policy family (ACT, flow, ...).

    A subclass sets ``policy_type`` and has ``config`` (with ``to_dict()``), ``metadata``
    and a ``normalizer`` submodule whose buffers are written to the stats file instead of
    the weights file.
    """

    policy_type: str

    def weights(self) -> dict[str, torch.Tensor]:
        """Trainable weights only; normalization stats go to stats.safetensors."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("normalizer.")}  # type: ignore[attr-defined]

    def save_into(self, directory: Path) -> None:
        """Write the policy files into an existing directory (the trainer adds its own files)."""
        save_policy_files(
            directory,
            policy_type=self.policy_type,
            config=self.config.to_dict(),  # type: ignore[attr-defined]
            metadata=self.metadata,  # type: ignore[attr-defined]
            weights=self.weights(),
            stats=self.normalizer.stats_dict(),  # type: ignore[attr-defined]
        )

    def save_pretrained(self, directory: str | Path) -> None:
        with atomic_directory(Path(directory)) as tmp:
            self.save_into(tmp)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> Any:
        """Rebuild the policy from its checkpoint; ``overrides`` replace config fields."""
        from chunkwise.policies.common.config import PolicyConfig
        from chunkwise.policies.common.trainable import DatasetInfo

        directory = Path(directory)
        cfg_json, weights, stats = load_policy_files(directory)
        if cfg_json.get("type") != cls.policy_type:
            raise ValueError(f"{directory / CONFIG_FILE}: type is {cfg_json.get('type')!r}, not {cls.policy_type!r}")
        config = PolicyConfig.from_dict(cls.policy_type, {**cfg_json["config"], **overrides})
        meta = PolicyMetadata.from_dict(cfg_json["metadata"])
        info = DatasetInfo(
            observation_spec=dict(meta.observation_spec),
            action_dim=meta.action_dim,
            fps=meta.fps,
            stats=stats,
            task=str(meta.extra.get("task", "")),
        )
        policy = cls(config, info)  # type: ignore[call-arg]
        missing, unexpected = policy.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith("normalizer.")]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing}, unexpected {unexpected})")
        policy.eval()
        return policy
