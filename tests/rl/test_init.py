"""Initialisation of the RL actor from a BC ACT checkpoint (what maps, what does not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.rl.config import ActorConfig, SACConfig
from chunkwise.rl.init import map_bc_checkpoint
from chunkwise.rl.learner import ChunkSAC
from chunkwise.types import ACTION, OBS_STATE, FeatureSpec

torch.set_num_threads(1)
S, A, H = 6, 2, 3


def _bc_checkpoint(path: Path) -> Path:
    rng = np.random.default_rng(0)
    stats = {
        OBS_STATE: {"mean": rng.normal(size=S).astype(np.float32), "std": rng.uniform(0.5, 2, S).astype(np.float32)},
        ACTION: {"mean": np.array([0.1, -0.2], np.float32), "std": np.array([0.5, 0.25], np.float32)},
    }
    info = DatasetInfo(observation_spec={OBS_STATE: FeatureSpec((S,), "float32")}, action_dim=A, fps=80.0, stats=stats)
    cfg = ACTConfig(chunk_size=H, dim_model=32, n_heads=4, dim_feedforward=64, n_decoder_layers=1, n_encoder_layers=1,
                    n_vae_encoder_layers=1)
    policy = cfg.make_policy(info)
    policy.save_pretrained(path)
    return path


def _learner(actor: str = "act", dim_model: int = 32) -> ChunkSAC:
    net = ActorConfig(dim_model=dim_model, n_heads=4, dim_feedforward=64, n_decoder_layers=1)
    return ChunkSAC(SACConfig(actor=actor, chunk_size=H, actor_net=net), S, A)


def test_act_decoder_and_stats_are_mapped(tmp_path: Path) -> None:
    from chunkwise.policies import load

    ckpt = _bc_checkpoint(tmp_path / "bc")
    bc = load(ckpt)
    learner = _learner()
    report = map_bc_checkpoint(learner, ckpt)
    assert "observation.state mean/std" in report["mapped"]
    assert any("decoder" in m for m in report["mapped"])
    stats = bc.normalizer.stats_dict()
    for module in (learner.actor, learner.critic, learner.critic_target):
        np.testing.assert_allclose(module.obs_mean.numpy(), stats[OBS_STATE]["mean"])
        np.testing.assert_allclose(module.obs_std.numpy(), stats[OBS_STATE]["std"], rtol=1e-6)
    for k, v in bc.model.decoder.state_dict().items():
        torch.testing.assert_close(learner.actor.decoder.state_dict()[k], v)
    torch.testing.assert_close(learner.actor.chunk_queries[0], bc.model.queries.weight)
    # the mean head is the BC head followed by the action un-normalisation
    h = torch.randn(4, H, 32)
    with torch.no_grad():
        expected = bc.normalizer.unnormalize(ACTION, bc.model.heads["action"](h))
        torch.testing.assert_close(learner.actor.mean_head(h), expected)


def test_other_actors_get_stats_only(tmp_path: Path) -> None:
    ckpt = _bc_checkpoint(tmp_path / "bc")
    for learner in (_learner("mlp"), _learner("act", dim_model=64)):
        before = {k: v.clone() for k, v in learner.actor.state_dict().items() if "obs_" not in k}
        report = map_bc_checkpoint(learner, ckpt)
        assert report["mapped"] == ["observation.state mean/std"]
        assert any("network weights" in m for m in report["not_mapped"])
        after = learner.actor.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_state_dim_mismatch_is_an_error(tmp_path: Path) -> None:
    ckpt = _bc_checkpoint(tmp_path / "bc")
    learner = ChunkSAC(SACConfig(actor="mlp", chunk_size=H), S + 1, A)
    with pytest.raises(ValueError, match="state dim"):
        map_bc_checkpoint(learner, ckpt)
