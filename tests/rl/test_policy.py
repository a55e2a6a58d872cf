"""An RL checkpoint is a Policy: ``chunkwise.policies.load(<rl checkpoint or run dir>)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkwise.policies import Policy, load
from chunkwise.rl.checkpoint import replay_tensors, resolve_checkpoint, write_checkpoint
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.policy import RLActorPolicy, rl_metadata
from chunkwise.rl.replay import EpisodeReplay
from chunkwise.rl.train import RLConfig, config_dict
from chunkwise.types import OBS_STATE, FeatureSpec

torch.set_num_threads(1)
S, A, H = 39, 4, 3


def _cfg(actor: str, **net) -> RLConfig:  # type: ignore[no-untyped-def]
    import draccus

    args = [f"--actor={actor}", f"--chunk_size={H}", "--actor_net.dim_model=32", "--actor_net.dim_feedforward=64",
            "--actor_net.hidden_dims=[32]", "--critic_net.hidden_dims=[32]", "--env.fps=40"]
    args += [f"--actor_net.{k}={v}" for k, v in net.items()]
    return draccus.parse(RLConfig, args=args)


def save_learner(run: Path, learner: ChunkSAC, cfg: RLConfig, env_steps: int, keep: int = 2) -> Path:
    """What ``RLTrainer.save`` writes, without an env (fps from the config)."""
    meta = rl_metadata(config_dict(cfg), S, A, cfg.env.fps, env_steps=env_steps)
    return write_checkpoint(
        run / "checkpoints", env_steps, learner=learner.state_dict(), actor=learner.get_weights(),
        replay=replay_tensors(EpisodeReplay(10, S, A)), rng={"torch": torch.get_rng_state()},
        config={"obs_dim": S, "action_dim": A, "config": config_dict(cfg), "metadata": meta.to_dict()},
        train_state={"env_steps": env_steps, "updates": 0, "episodes": 0, "numpy_rng": {}}, keep=keep,
    )


def _learner(cfg: RLConfig, seed: int = 0) -> ChunkSAC:
    torch.manual_seed(seed)
    learner = ChunkSAC(cfg, S, A)
    rng = np.random.default_rng(seed)
    learner.set_obs_stats(rng.normal(size=S), rng.uniform(0.5, 2.0, S))
    return learner


@pytest.mark.parametrize("actor,net", [("mlp", {}), ("act", {}), ("act", {"memory": "state_and_features"}),
                                       ("sequence_act", {"obs_history_length": 1}),
                                       ("sequence_act", {"obs_history_length": 3, "autoregressive": "true"})])
def test_loaded_policy_is_the_deterministic_actor(tmp_path: Path, actor: str, net: dict) -> None:
    cfg = _cfg(actor, **net)
    learner = _learner(cfg)
    save_learner(tmp_path / "run", learner, cfg, env_steps=123)
    policy = load(tmp_path / "run")  # the run directory resolves to checkpoints/last
    assert isinstance(policy, RLActorPolicy) and isinstance(policy, Policy)
    md = policy.metadata
    assert md.policy_type == "rl_sac" and md.prefix_length is None
    assert dict(md.observation_spec) == {OBS_STATE: FeatureSpec((S,), "float32")}
    assert (md.action_dim, md.chunk_size, md.fps) == (A, H, 40.0)
    assert md.extra["actor"] == actor and md.extra["env_steps"] == 123 and md.extra["action"] == "tanh(mean)"

    rng = np.random.default_rng(1)
    states = rng.normal(size=(4, S)).astype(np.float32)
    out = policy.predict_chunk({OBS_STATE: states, "task": ["reach-v3"] * 4})
    assert out.shape == (4, H, A) and out.dtype == np.float32 and np.all(np.abs(out) <= 1)
    np.testing.assert_array_equal(out, policy.predict_chunk({OBS_STATE: states}))  # deterministic
    for i in range(4):  # = what the RL evaluation executes: act(history, deterministic=True)
        hist = np.repeat(states[i : i + 1], cfg.obs_history_length, 0)
        np.testing.assert_allclose(out[i], learner.act(hist, deterministic=True), atol=1e-5)
        # one observation at a time, as both executors call it: bit for bit (the learner acts in
        # eval mode too; the attention fast path's ~1e-5 made episodes diverge otherwise)
        np.testing.assert_array_equal(policy.predict_chunk({OBS_STATE: states[i : i + 1]})[0],
                                      learner.act(hist, deterministic=True))
    if not (actor == "sequence_act" and net.get("autoregressive")):  # AR has no parallel distribution
        mean, _ = learner.actor.distribution(torch.as_tensor(np.repeat(states[:, None], cfg.obs_history_length, 1)))
        np.testing.assert_allclose(out, torch.tanh(mean).detach().numpy(), atol=1e-6)
    if cfg.obs_history_length > 1:
        assert md.extra["obs_history"] == "current state repeated 3x"


def test_checkpoint_paths_resolve_to_the_same_policy(tmp_path: Path) -> None:
    cfg = _cfg("mlp")
    run = tmp_path / "run"
    first = save_learner(run, _learner(cfg, 0), cfg, env_steps=0)
    newest = save_learner(run, _learner(cfg, 1), cfg, env_steps=50)
    assert (run / "checkpoints" / "last").is_symlink()
    assert resolve_checkpoint(run) == resolve_checkpoint(run / "checkpoints") == newest.resolve()
    x = {OBS_STATE: np.ones((1, S), np.float32)}
    by_run = load(run).predict_chunk(x)
    np.testing.assert_array_equal(by_run, load(run / "checkpoints" / "last").predict_chunk(x))
    np.testing.assert_array_equal(by_run, load(newest).predict_chunk(x))
    assert not np.array_equal(by_run, load(first).predict_chunk(x))
    assert load(first).metadata.extra["env_steps"] == 0


def test_checkpoint_without_stored_metadata_still_loads(tmp_path: Path) -> None:
    """config.json written before the metadata was stored: rebuilt from the RL config."""
    cfg = _cfg("act")
    ck = save_learner(tmp_path / "run", _learner(cfg), cfg, env_steps=7)
    doc = json.loads((ck / "config.json").read_text())
    stored = doc.pop("metadata")
    (ck / "config.json").write_text(json.dumps(doc))
    assert load(ck).metadata.to_dict() == stored


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a chunkwise checkpoint"):
        load(tmp_path)
    from chunkwise.rl.policy import load_rl_policy

    with pytest.raises(FileNotFoundError, match="not an RL checkpoint or run directory"):
        load_rl_policy(tmp_path)
    cfg = _cfg("mlp")
    ck = save_learner(tmp_path / "run", _learner(cfg), cfg, env_steps=0)
    (ck / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load(tmp_path / "run")


@pytest.mark.parametrize("delay", [0, 2])
def test_ibrl_checkpoint_runs_the_proposal_choice_of_the_rl_evaluation(tmp_path: Path, delay: int) -> None:
    """reference_policy=bc: the loaded policy picks between the actor and pi_ref with the
    critic exactly as ``ChunkSAC.act`` does in the RL evaluation (and, under delay, after
    the committed prefix the executor passes)."""
    from chunkwise.types import Prefix

    extra = [f"--rollout_delay={delay}", "--rollout_strategy=latest_only"] if delay else []
    import draccus

    cfg = draccus.parse(RLConfig, args=[f"--chunk_size={H}", "--actor_net.dim_model=32", "--actor_net.dim_feedforward=64",
                                        "--critic_net.hidden_dims=[32]", "--env.fps=40", "--reference_policy=bc",
                                        "--init.bc_warmstart_steps=1", *extra])
    learner = _learner(cfg)
    learner.set_reference()
    with torch.no_grad():
        for p in learner.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_learner(tmp_path / "run", learner, cfg, env_steps=5)
    policy = load(tmp_path / "run")
    assert isinstance(policy, RLActorPolicy) and policy.proposal is not None
    assert policy.metadata.prefix_length == (delay or None)
    states = np.random.default_rng(2).normal(size=(6, S)).astype(np.float32)
    prefixes = [Prefix(np.random.default_rng(i).uniform(-1, 1, (H, A)).astype(np.float32), delay) for i in range(6)]
    out = policy.predict_chunk({OBS_STATE: states}, prefixes if delay else None)
    for i in range(6):
        committed = prefixes[i].actions[:delay] if delay else None
        want = learner.act(states[i : i + 1], deterministic=True, prefix=committed)
        np.testing.assert_allclose(out[i], want, atol=1e-5)  # a batch of 6 vs one row: float error only
        one = policy.predict_chunk({OBS_STATE: states[i : i + 1]}, prefixes[i : i + 1] if delay else None)
        np.testing.assert_array_equal(one[0], want)
    assert learner.picks["rl"] > 0 and learner.picks["reference"] > 0  # both proposals were chosen
    if delay:
        with pytest.raises(ValueError, match="committed prefix"):
            policy.predict_chunk({OBS_STATE: states})
        # the first request of an episode: the queue is empty, the robot idles through the delay.
        # The checkpoint's idle action (stored by the run) fills the window as in the learner.
        idle = np.array([0.0, 0.0, 0.0, -1.0], np.float32)
        ck = resolve_checkpoint(tmp_path / "run")
        doc = json.loads((ck / "config.json").read_text())
        doc["metadata"]["extra"]["idle_action"] = idle.tolist()
        (ck / "config.json").write_text(json.dumps(doc))
        policy = load(tmp_path / "run")
        empty = [Prefix(np.zeros((0, A), np.float32), delay) for _ in range(6)]
        out = policy.predict_chunk({OBS_STATE: states}, empty)
        for i in range(6):
            want = learner.act(states[i : i + 1], deterministic=True, prefix=np.tile(idle, (delay, 1)))
            np.testing.assert_allclose(out[i], want, atol=1e-5)
            np.testing.assert_array_equal(policy.predict_chunk({OBS_STATE: states[i : i + 1]}, empty[i : i + 1])[0], want)
