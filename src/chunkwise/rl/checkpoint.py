"""RL checkpoints: one complete directory per save, renamed into place; ``last`` points to it.

    <output_dir>/checkpoints/
        step_000000000/       the initialisation (BC mapping / warm start), never pruned
        step_000015000/       older saves (env steps), the newest ``keep`` are kept
        step_000020000/
            learner.safetensors   ChunkSAC.state_dict(): actor, critics, target critics,
                                  log temperature, optimizer moments, step
            model.safetensors     ChunkSAC.get_weights(): the actor alone (deployable)
            replay.safetensors    online replay arrays (so --resume continues the same data)
            rng.safetensors       torch RNG state
            config.json           {"type": "rl_sac", "config": <RLConfig as dict>, obs_dim,
                                   action_dim, "metadata": <PolicyMetadata>}
            train_state.json      counters + numpy RNG state
        last -> step_000020000   relative symlink, replaced with one rename after the
                                 directory is complete

Saving: every file is written into a temporary sibling directory, which is renamed to its
step name (``atomic_directory``: the target never exists yet, so this is one rename), then
a new ``last`` symlink is renamed over the old one, then old step directories are moved
aside (rename) and deleted. A process killed at any point leaves ``last`` pointing at a
complete checkpoint: the previous one, or the new one. (No fsync: this guards against a
crashed or killed process, not against losing power.)

Readers resolve ``last`` once (``resolve_checkpoint``) and read every file from the
concrete step directory, so they never mix files of two checkpoints. Nothing here
unpickles: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file

from chunkwise.policies.common.checkpoint import atomic_directory, save_tensors_atomic, write_json_atomic
from chunkwise.rl.replay import EpisodeReplay

RL_TYPE = "rl_sac"
CHECKPOINTS = "checkpoints"
LAST = "last"
BEST = "best"  # the step directory of the best evaluation so far (``chunkwise eval --policy.path=<run>/checkpoints/best``)
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.json"
FILES = ("learner.safetensors", "model.safetensors", "replay.safetensors", "rng.safetensors", CONFIG_FILE, STATE_FILE)
INIT_NAME = f"step_{0:09d}"
_STEP_DIR = re.compile(r"^step_\d{9}(-\d+)?$")
_REPLAY_FIELDS = ("states", "next_states", "actions", "rewards", "terminal", "remaining", "offset", "episode_id")


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    save_tensors_atomic(path, tensors)


def save_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, json.loads(json.dumps(obj, default=str)))


# ---------------------------------------------------------------------------- replay
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


# ---------------------------------------------------------------------------- layout
def is_complete(ckpt: Path) -> bool:
    return all((ckpt / f).is_file() for f in FILES)


def step_dirs(ckpts: Path) -> list[Path]:
    """Complete step directories, oldest first (by name: zero-padded env steps)."""
    if not ckpts.is_dir():
        return []
    return sorted(p for p in ckpts.iterdir() if _STEP_DIR.match(p.name) and p.is_dir() and is_complete(p))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint dir, a ``checkpoints/`` dir or a run dir.

    ``<run>`` -> ``<run>/checkpoints/last``; ``<run>/checkpoints`` -> its ``last``; ``last``
    (a symlink) -> the concrete step directory it names, so every file is read from the
    same checkpoint even if a writer moves ``last`` meanwhile. If ``last`` is missing the
    newest complete step directory is used. Raises FileNotFoundError naming ``path``.
    """
    path = Path(path)
    for cand in (path, path / LAST, path / CHECKPOINTS / LAST):
        if (cand / CONFIG_FILE).is_file():
            return Path(os.path.realpath(cand))
    for ckpts in (path, path / CHECKPOINTS):
        found = step_dirs(ckpts)
        if found:
            return found[-1]
    raise FileNotFoundError(
        f"{path} is not an RL checkpoint or run directory: no {CONFIG_FILE} in it, in {LAST}/ or in {CHECKPOINTS}/{LAST}/"
    )


def _point_link(ckpts: Path, name: str, link: str = LAST) -> None:
    last = ckpts / link
    if last.exists() and not last.is_symlink():  # a real directory (layout before step dirs)
        os.replace(last, ckpts / f"legacy-{os.getpid()}")
    tmp = ckpts / f".{link}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, last)  # rename over the old symlink: atomic


def point_best(ckpts: Path, step_dir: Path) -> None:
    """Point ``checkpoints/best`` at ``step_dir``; ``prune`` keeps what it names."""
    _point_link(ckpts, step_dir.name, BEST)


def _discard(path: Path) -> None:
    trash = path.parent / f".{path.name}.trash.{os.getpid()}"
    os.replace(path, trash)  # the step name disappears at once, the files after
    shutil.rmtree(trash, ignore_errors=True)


def prune(ckpts: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step directories, the initial one, ``last``'s and ``best``'s."""
    current = {os.path.realpath(ckpts / LAST), os.path.realpath(ckpts / BEST)}
    dirs = [p for p in ckpts.iterdir() if _STEP_DIR.match(p.name) and p.is_dir()]
    dirs.sort()
    complete = [p for p in dirs if is_complete(p)]
    keep_set = {p.name for p in complete[-keep:]} | {INIT_NAME}
    for p in dirs:
        if p.name not in keep_set and os.path.realpath(p) not in current:
            _discard(p)
    # left by a process killed mid-save or mid-delete (one writer per run: none is ours now)
    for p in [*ckpts.glob(".step_*.tmp"), *ckpts.glob(".*.trash.*")]:
        shutil.rmtree(p, ignore_errors=True)
    for p in [*ckpts.glob(f".{LAST}.*.tmp"), *ckpts.glob(f".{BEST}.*.tmp")]:
        p.unlink(missing_ok=True)


def write_checkpoint(
    ckpts: Path,
    env_steps: int,
    *,
    learner: Mapping[str, torch.Tensor],
    actor: Mapping[str, torch.Tensor],
    replay: Mapping[str, torch.Tensor],
    rng: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    train_state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write one complete checkpoint directory, point ``last`` at it, prune; -> its path."""
    ckpts = Path(ckpts)
    ckpts.mkdir(parents=True, exist_ok=True)
    name = f"step_{int(env_steps):09d}"
    k = 0
    while (ckpts / name).exists():  # never replace a directory in place
        k += 1
        name = f"step_{int(env_steps):09d}-{k}"
    target = ckpts / name
    with atomic_directory(target) as tmp:
        save_tensors(tmp / "learner.safetensors", learner)
        save_tensors(tmp / "model.safetensors", actor)
        save_tensors(tmp / "replay.safetensors", replay)
        save_tensors(tmp / "rng.safetensors", rng)
        save_json(tmp / CONFIG_FILE, {"type": RL_TYPE, **config})
        save_json(tmp / STATE_FILE, dict(train_state))
    _point_link(ckpts, name)
    prune(ckpts, keep)
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Everything ``--resume`` needs, all read from one resolved checkpoint directory."""
    ckpt = resolve_checkpoint(path)
    missing = [f for f in FILES if not (ckpt / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{ckpt} is not a complete RL checkpoint (missing {', '.join(missing)})")
    return {
        "path": ckpt,
        "train_state": json.loads((ckpt / STATE_FILE).read_text()),
        "learner": load_file(str(ckpt / "learner.safetensors")),
        "replay": load_file(str(ckpt / "replay.safetensors")),
        "rng": load_file(str(ckpt / "rng.safetensors")),
        "config": json.loads((ckpt / CONFIG_FILE).read_text()),
    }


def has_checkpoint(run_dir: Path) -> bool:
    try:
        return is_complete(resolve_checkpoint(Path(run_dir) / CHECKPOINTS))
    except FileNotFoundError:
        return False
