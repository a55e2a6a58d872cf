"""RL checkpoints are whole directories renamed into place: a kill -9 mid-save leaves the
previous checkpoint complete and consistent (weights, counters and replay from one save)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkwise.policies import load
from chunkwise.rl.checkpoint import (
    INIT_NAME,
    load_checkpoint,
    point_best,
    replay_tensors,
    resolve_checkpoint,
    step_dirs,
    write_checkpoint,
)
from chunkwise.rl.config import ActorConfig, CriticConfig, SACConfig
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.replay import Episode, EpisodeReplay

from .test_policy import _cfg, _learner, save_learner

def _save_forever(run: Path, config: dict, start: int, out_fd: int) -> None:
    """Save checkpoint i with every actor weight = i, learner.step = i, env_steps = i and a
    replay filled with i; write "saved i" after each. About 20 MB per checkpoint, so a save
    takes long enough for random kills to land inside it."""
    c = config["config"]
    sac = SACConfig(actor=c["actor"], chunk_size=c["chunk_size"], actor_net=ActorConfig(**c["actor_net"]),
                    critic_net=CriticConfig(**c["critic_net"]))
    learner = ChunkSAC(sac, 39, 4)
    n = 40_000
    replay = EpisodeReplay(n, 39, 4)
    replay.add_episode(Episode(np.zeros((n, 39)), np.zeros((n, 4)), np.zeros(n), np.zeros((n, 39)), False))
    i = start
    while True:
        i += 1
        with torch.no_grad():
            for p in learner.actor.parameters():
                p.fill_(float(i))
        learner.step = i
        replay.states[:] = i
        write_checkpoint(run / "checkpoints", i, learner=learner.state_dict(), actor=learner.get_weights(),
                         replay=replay_tensors(replay), rng={"torch": torch.get_rng_state()}, config=config,
                         train_state={"env_steps": i, "updates": i, "episodes": i}, keep=2)
        os.write(out_fd, f"saved {i}\n".encode())


def _fork_saver(run: Path, config: dict, start: int) -> tuple[int, int]:
    """A child process (forked: torch is already imported) running ``_save_forever``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(r)
        try:
            _save_forever(run, config, start, w)
        finally:
            os._exit(1)
    os.close(w)
    return pid, r


def _check_consistent(run: Path) -> int:
    """The checkpoint ``last`` names is complete and every file comes from the same save."""
    ck = load_checkpoint(run)
    i = ck["train_state"]["env_steps"]
    assert ck["path"].name == f"step_{i:09d}"
    assert int(ck["learner"]["step"][0]) == i
    actor = {k[len("actor."):]: v for k, v in ck["learner"].items() if k.startswith("actor.") and "obs_" not in k}
    assert all(torch.all(v == i) for v in actor.values()), "learner.safetensors is from another save"
    assert bool(torch.all(ck["replay"]["states"] == i)), "replay.safetensors is from another save"
    policy = load(run)  # the deployable actor, through chunkwise.policies.load
    assert policy.metadata.policy_type == "rl_sac"
    assert all(torch.all(p == i) for p in policy.actor.parameters()), "model.safetensors is from another save"
    return i


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_during_save_leaves_previous_checkpoint(tmp_path: Path) -> None:
    """8 times: a forked process saves checkpoints in a loop and is killed (SIGKILL) at a
    random moment; ``last`` must name a complete checkpoint whose files all come from one
    save (the in-place layout this replaced could pair new weights with old counters)."""
    cfg = _cfg("mlp")
    run = tmp_path / "run"
    save_learner(run, _learner(cfg), cfg, env_steps=0)  # the step-0 checkpoint
    config = json.loads((resolve_checkpoint(run) / "config.json").read_text())
    config.pop("type")
    rng = np.random.default_rng(0)
    last = mid_save = 0
    for _ in range(8):
        pid, fd = _fork_saver(run, config, last)
        stream = os.fdopen(fd)
        first = stream.readline()  # one save done: the loop is warm
        assert first.startswith("saved"), first
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        saved = [int(line.split()[1]) for line in [first, *stream.read().splitlines()] if line.startswith("saved")]
        stream.close()
        mid_save += any((run / "checkpoints").glob(".step_*.tmp"))  # killed while writing files
        i = _check_consistent(run)
        # the newest reported save or the one after it (killed after its rename, before the print)
        assert i in (saved[-1], saved[-1] + 1), (i, saved)
        last = i
        names = [p.name for p in step_dirs(run / "checkpoints")]
        assert INIT_NAME in names and len(names) <= 4, names  # init + kept ones (+ an interrupted prune)
    save_learner(run, _learner(cfg), cfg, env_steps=last + 1)  # the next save clears what the kills left
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")) == []
    assert last >= 8 and mid_save >= 1, (last, mid_save)


def test_prune_keeps_init_and_newest(tmp_path: Path) -> None:
    cfg = _cfg("mlp")
    run = tmp_path / "run"
    learner = _learner(cfg)
    for step in (0, 10, 20, 30, 40):
        save_learner(run, learner, cfg, env_steps=step, keep=2)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last", "step_000000000", "step_000000030", "step_000000040"]
    assert os.readlink(run / "checkpoints" / "last") == "step_000000040"  # relative: the run dir can move
    save_learner(run, learner, cfg, env_steps=40)  # the same step again never replaces a directory
    assert os.readlink(run / "checkpoints" / "last") == "step_000000040-1"


def test_prune_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg("mlp")
    run = tmp_path / "run"
    learner = _learner(cfg)
    for step in (0, 10, 20, 30, 40):
        ck = save_learner(run, learner, cfg, env_steps=step, keep=1)
        if step == 10:
            point_best(run / "checkpoints", ck)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best", "last", "step_000000000", "step_000000010", "step_000000040"]
    assert resolve_checkpoint(run / "checkpoints" / "best").name == "step_000000010"
    assert load(run / "checkpoints" / "best").metadata.extra["env_steps"] == 10


def test_legacy_last_directory_is_moved_aside(tmp_path: Path) -> None:
    """Runs written before step directories have a real ``checkpoints/last/``."""
    cfg = _cfg("mlp")
    run = tmp_path / "run"
    ck = save_learner(run, _learner(cfg), cfg, env_steps=5)
    (run / "checkpoints" / "last").unlink()
    os.replace(ck, run / "checkpoints" / "last")
    assert load_checkpoint(run)["train_state"]["env_steps"] == 5
    save_learner(run, _learner(cfg), cfg, env_steps=10)
    assert load_checkpoint(run)["train_state"]["env_steps"] == 10
    assert any(p.name.startswith("legacy-") for p in (run / "checkpoints").iterdir())


@pytest.mark.parametrize("missing", ["train_state.json", "learner.safetensors"])
def test_incomplete_checkpoint_is_refused(tmp_path: Path, missing: str) -> None:
    cfg = _cfg("mlp")
    ck = save_learner(tmp_path / "run", _learner(cfg), cfg, env_steps=0)
    (ck / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_checkpoint(tmp_path / "run")
