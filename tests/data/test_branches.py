"""Prefix branches: forced stale-plan prefix, then the expert from where the prefix leads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chunkwise.data.branches import BranchConfig, _BranchRecorder, record_branches
from chunkwise.data.collect import CollectConfig, collect
from chunkwise.data.dataset import ChunkDataset
from chunkwise.envs import MetaWorldEnvConfig
from chunkwise.policies.scripted import OraclePolicy
from chunkwise.types import ACTION, OBS_STATE, PREFIX_LENGTH, Prefix, stack_observations


def test_branch_is_the_prefix_then_the_prefix_aware_oracle(push_env):
    env = push_env
    obs = env.reset(seed=5)
    for _ in range(7):
        obs, *_ = env.step(env.expert_action())
    before = env.raw_observation()
    stale = np.tile(np.array([[0.3, -0.2, 0.0, -1.0]], np.float32), (6, 1))  # a plan that is plainly off
    recorder = _BranchRecorder(env, BranchConfig(delays=[4], chunk_size=12, length=12))
    assert recorder.metadata.uses_prefix  # so the executor hands it the queue
    chunk = recorder.predict_chunk(stack_observations([obs]), [Prefix(actions=stale, delay=4)])
    np.testing.assert_array_equal(env.raw_observation(), before)  # the branch ran in a snapshot
    # what gets executed is the plain oracle's plan (the stale kind a prefix-unaware model makes)
    np.testing.assert_array_equal(chunk, OraclePolicy(env, chunk_size=12).predict_chunk(stack_observations([obs])))
    (branch,) = recorder.branches
    np.testing.assert_array_equal(branch[ACTION][:4], stale[:4])
    aware = OraclePolicy(env, chunk_size=12, prefix_aware=True).predict_chunk(
        stack_observations([obs]), [Prefix(actions=stale, delay=4)])[0]
    np.testing.assert_array_equal(branch[ACTION], aware)  # continuation = expert after the prefix
    np.testing.assert_array_equal(branch[PREFIX_LENGTH], [4, 3, 2, 1] + [0] * 8)
    np.testing.assert_array_equal(branch[OBS_STATE][0], before.astype(np.float32))
    assert branch["next.done"][-1] and not branch["next.done"][:-1].any()


def test_record_branches_one_per_delayed_request(push_env):
    cfg = BranchConfig(delays=[2, 3], chunk_size=10, length=8, max_steps=40)
    branches = record_branches(push_env, seed=1, cfg=cfg)
    assert len(branches) >= 40 // 10  # at least one request per chunk's worth of steps
    for b in branches:
        assert b[PREFIX_LENGTH][0] in (2, 3) and len(b[ACTION]) <= 8
        assert len({len(v) for v in b.values()}) == 1


def test_collect_with_branches_writes_prefix_length(tmp_path: Path):
    out = tmp_path / "br"
    cfg = CollectConfig(env=MetaWorldEnvConfig(task="reach-v3"), n_episodes=2, output_dir=str(out), progress=False,
                        branches=BranchConfig(delays=[3], chunk_size=10, length=6, max_steps=30))
    s = collect(cfg)
    assert s.episodes == 2 and s.branches >= 2
    ds = ChunkDataset(out, chunk_size=10)
    assert ds.num_episodes == 2 + s.branches and len(ds) == s.frames
    pl = ds.prefix_length
    assert pl is not None
    for lo, hi in ds.episode_bounds:
        first = int(pl[lo])
        if first == 0:  # a demonstration: nothing forced anywhere
            assert not pl[lo:hi].any()
        else:  # a branch: 3, 2, 1, 0, ...
            np.testing.assert_array_equal(pl[lo:hi], np.maximum(3 - np.arange(hi - lo), 0))
    assert ds[int(ds.episode_bounds[-1][0])][PREFIX_LENGTH] == 3
    plain = tmp_path / "plain"
    collect(CollectConfig(env=MetaWorldEnvConfig(task="reach-v3"), n_episodes=1, output_dir=str(plain),
                          progress=False))
    assert ChunkDataset(plain, chunk_size=10).prefix_length is None  # column only when branching


@pytest.mark.parametrize("bad, match", [
    (dict(delays=[0]), "delays must be integers >= 1"),
    (dict(delays=[8], length=8), "must exceed the largest delay"),
    (dict(delays=[2], max_steps=0), "max_steps must be positive"),
])
def test_branch_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        BranchConfig(**bad)


@pytest.fixture(scope="module")
def push_flow_checkpoint(tmp_path_factory, metaworld_info):
    """An untrained delta-expert flow checkpoint shaped for push-v3 (chunk 12)."""
    import torch

    from chunkwise.policies.flow.config import FlowConfig

    torch.manual_seed(0)
    cfg = FlowConfig(chunk_size=12, n_action_steps=12, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                     delta_n_blocks=1, rtc_max_delay=4, delta_expert=True)
    path = tmp_path_factory.mktemp("flow") / "ck"
    cfg.make_policy(metaworld_info("push-v3", action_std=1.0)).save_pretrained(path)
    return path


def test_branches_from_a_learned_planner(push_env, push_flow_checkpoint):
    """``policy_path``: the executed plan is the checkpoint's (given the prefix, as deployed),
    and the branch is that queued prefix followed by the expert (DAgger for the prefix)."""
    from chunkwise.policies import load
    from chunkwise.runtime.strategies import get_strategy

    env = push_env
    obs = env.reset(seed=3)
    cfg = BranchConfig(delays=[4], chunk_size=12, length=12, policy_path=str(push_flow_checkpoint))
    recorder = _BranchRecorder(env, cfg)
    queued = np.tile(np.array([[0.5, 0.1, -0.3, 1.0]], np.float32), (8, 1))
    prefix = [Prefix(actions=queued, delay=4)]
    import torch

    torch.manual_seed(1)
    chunk = recorder.predict_chunk(stack_observations([obs]), prefix)
    torch.manual_seed(1)
    want = get_strategy("delta_expert").wrap_policy(load(push_flow_checkpoint)).predict_chunk(
        stack_observations([obs]), prefix)
    np.testing.assert_allclose(chunk, np.asarray(want)[:, :12], atol=1e-6)
    assert not np.allclose(chunk, OraclePolicy(env, chunk_size=12).predict_chunk(stack_observations([obs])))
    (branch,) = recorder.branches
    np.testing.assert_array_equal(branch[ACTION][:4], queued[:4])
    aware = OraclePolicy(env, chunk_size=12, prefix_aware=True).predict_chunk(stack_observations([obs]), prefix)[0]
    np.testing.assert_array_equal(branch[ACTION], aware)


def test_branch_planner_errors(push_env, push_flow_checkpoint):
    with pytest.raises(ValueError, match="plain strategy"):
        BranchConfig(delays=[2], policy_path="x", policy_strategy="delta_expert+correction")
    with pytest.raises(ValueError, match="chunk_size=40 > chunk_size=12"):
        _BranchRecorder(push_env, BranchConfig(delays=[2], chunk_size=40, length=40, policy_path=str(push_flow_checkpoint)))
