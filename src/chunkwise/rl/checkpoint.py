"""RL checkpoints: safetensors for tensors, JSON for everything else, every file atomic.

    <output_dir>/checkpoints/last/
        learner.safetensors   ChunkSAC.state_dict(): actor, critics, target critics,
                              log temperature, optimizer moments, step
        model.safetensors     ChunkSAC.get_weights(): the actor alone (deployable)
        replay.safetensors    online replay arrays (so --resume continues the same data)
        rng.safetensors       torch RNG state
        config.json           {"type": "rl_sac", "config": <RLConfig as dict>, obs_dim, action_dim}
        train_state.json      counters + numpy RNG state; written last = commit marker

A reader only trusts a checkpoint whose train_state.json exists; a crash mid-save leaves
the previous complete set of files (each replaced atomically) or no train_state.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from chunkwise.rl.replay import EpisodeReplay

_REPLAY_FIELDS = ("states", "next_states", "actions", "rewards", "terminal", "remaining", "offset", "episode_id")


def _atomic(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp))


def save_json(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)

    _atomic(path, write)


def replay_tensors(replay: EpisodeReplay) -> dict[str, torch.Tensor]:
    n = replay.size
    out = {}
    for name in _REPLAY_FIELDS:
        arr = getattr(replay, name)[:n]
        out[name] = torch.from_numpy(arr.astype(np.uint8) if arr.dtype == bool else np.ascontiguousarray(arr))
    out["meta"] = torch.tensor([replay.pos, replay.size, replay.n_episodes, replay.total_steps], dtype=torch.int64)
    return out


def restore_replay(replay: EpisodeReplay, tensors: dict[str, torch.Tensor]) -> None:
    pos, size, n_eps, total = (int(x) for x in tensors["meta"])
    if size > replay.capacity:
        raise ValueError(f"saved replay holds {size} steps > replay_capacity={replay.capacity}")
    for name in _REPLAY_FIELDS:
        arr = tensors[name].numpy()
        getattr(replay, name)[:size] = arr.astype(bool) if name == "terminal" else arr
    replay.pos, replay.size, replay.n_episodes, replay.total_steps = pos, size, n_eps, total


def load_checkpoint(ckpt_dir: Path) -> dict[str, Any]:
    state_file = ckpt_dir / "train_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{ckpt_dir} has no complete RL checkpoint ({state_file.name} missing)")
    return {
        "train_state": json.loads(state_file.read_text()),
        "learner": load_file(ckpt_dir / "learner.safetensors"),
        "replay": load_file(ckpt_dir / "replay.safetensors"),
        "rng": load_file(ckpt_dir / "rng.safetensors"),
        "config": json.loads((ckpt_dir / "config.json").read_text()),
    }
