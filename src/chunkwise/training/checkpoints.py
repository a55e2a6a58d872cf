"""Training checkpoints: a policy checkpoint plus the state needed to resume exactly.

    <output_dir>/checkpoints/
        step_0001000/          one directory per save (assembled under a temp name, renamed)
            config.json model.safetensors stats.safetensors     <- a loadable policy
            train_state.json      step, seed, optimizer hyper-parameters, train config
            optimizer.safetensors AdamW moments, "state/<param index>/<name>"
        last -> step_0001000   symlink, replaced atomically (os.replace of a new link)

Random state needs no saving: batch indices and dropout noise are seeded from
(seed, step) at every step, so a resumed run draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from chunkwise.policies.common.checkpoint import (
    atomic_directory,
    load_tensors,
    save_tensors_atomic,
    write_json_atomic,
)

TRAIN_STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LAST = "last"


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state_dict -> (tensors for safetensors, JSON-able param groups)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state/{idx}/{name}"] = t
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, groups


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value
    fixed = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": fixed})


def save_training_checkpoint(
    output_dir: Path,
    step: int,
    policy: Any,
    optimizer: torch.optim.Optimizer,
    train_state: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically, point ``last`` at it, prune old ones."""
    root = checkpoints_dir(output_dir)
    target = root / f"step_{step:07d}"
    with atomic_directory(target) as tmp:
        policy.save_into(tmp)
        tensors, groups = optimizer_to_files(optimizer)
        save_tensors_atomic(tmp / OPTIMIZER_FILE, tensors)
        write_json_atomic(tmp / TRAIN_STATE_FILE, {**train_state, "step": step, "optimizer_param_groups": groups})
    link_tmp = root / f".{LAST}.tmp.{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    os.symlink(target.name, link_tmp)
    os.replace(link_tmp, root / LAST)
    if keep_last > 0:
        steps = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in steps[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def last_checkpoint(output_dir: Path) -> Path | None:
    link = checkpoints_dir(output_dir) / LAST
    if link.exists():
        return link.resolve()
    return None


def load_train_state(ckpt: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer in place; return train_state.json (with ``step``)."""
    ckpt = Path(ckpt)
    for name in (TRAIN_STATE_FILE, OPTIMIZER_FILE):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"cannot resume from {ckpt}: {name} is missing")
    state = json.loads((ckpt / TRAIN_STATE_FILE).read_text())
    optimizer_from_files(optimizer, load_tensors(ckpt / OPTIMIZER_FILE), state["optimizer_param_groups"])
    return state
