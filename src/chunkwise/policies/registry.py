"""``load(path)``: a checkpoint directory -> a ready Policy.

A checkpoint directory holds ``config.json`` whose ``"type"`` names the policy family;
each family registers a loader here (``act``, ``flow``, ``rl_sac``, ...). A training run
directory (no ``config.json``, but ``checkpoints/last/config.json``) loads its newest
checkpoint. Loading never unpickles:
weights are safetensors, configs and stats are JSON.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

from chunkwise.policies.base import Policy

_LOADERS: dict[str, Callable[[Path], Policy]] = {}
# Families whose module registers a loader on import (imported on demand).
_KNOWN_MODULES = {
    "act": "chunkwise.policies.act.policy",
    "flow": "chunkwise.policies.flow.policy",
    "rl_sac": "chunkwise.rl.policy",
}


def register_loader(policy_type: str, loader: Callable[[Path], Policy]) -> None:
    _LOADERS[policy_type] = loader


def load(path: str | Path) -> Policy:
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "checkpoints" / "last" / "config.json").is_file():
        path = path / "checkpoints" / "last"  # a training run directory: its newest checkpoint
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a chunkwise checkpoint: {cfg_file} does not exist")
    policy_type = json.loads(cfg_file.read_text()).get("type")
    if policy_type not in _LOADERS and policy_type in _KNOWN_MODULES:
        importlib.import_module(_KNOWN_MODULES[policy_type])
    if policy_type not in _LOADERS:
        known = sorted(set(_LOADERS) | set(_KNOWN_MODULES))
        raise ValueError(f"{cfg_file}: unknown policy type {policy_type!r}; known: {known}")
    return _LOADERS[policy_type](path)
