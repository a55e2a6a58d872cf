import numpy as np
import pytest

from chunkwise.policies.base import Policy
from chunkwise.policies.scripted import OraclePolicy
from chunkwise.runtime import ExecutionConfig, VirtualClockExecutor
from chunkwise.types import stack_observations


def test_oracle_chunk_is_expert_lookahead_and_env_untouched(push_env):
    env = push_env
    pol = OraclePolicy(env, chunk_size=10)
    assert isinstance(pol, Policy)
    assert pol.metadata.chunk_size == 10 and pol.metadata.action_dim == 4
    obs = env.reset(seed=3)
    before = env.raw_observation()
    chunk = pol.predict_chunk(stack_observations([obs]))
    assert chunk.shape == (1, 10, 4) and chunk.dtype == np.float32
    np.testing.assert_array_equal(env.raw_observation(), before)  # restored
    assert env.elapsed_steps == 0
    # stepping the real env with the expert reproduces the look-ahead exactly
    for i in range(10):
        a = env.expert_action(None)
        np.testing.assert_array_equal(a, chunk[0, i])
        env.step(a)


def test_oracle_rejects_batch_and_stale_obs(push_env):
    pol = OraclePolicy(push_env, chunk_size=4)
    obs = push_env.reset(seed=0)
    with pytest.raises(ValueError, match="batch size must be 1"):
        pol.predict_chunk(stack_observations([obs, obs]))
    push_env.step(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="current state"):
        pol.predict_chunk(stack_observations([obs]))
    with pytest.raises(TypeError, match="snapshot"):
        OraclePolicy(object())


def test_oracle_sync_d0_succeeds_on_push_like_the_expert(push_env):
    env = push_env
    pol = OraclePolicy(env, chunk_size=50)
    r = VirtualClockExecutor(env, pol, ExecutionConfig(strategy="sync", actions_per_chunk=50), 0).run_episode(0)
    # the expert alone on the same seed
    env.reset(seed=0)
    for t in range(env.max_episode_steps):  # noqa: B007 (t is read after the loop)
        _, _, term, trunc, info = env.step(env.expert_action(None))
        if term or trunc:
            break
    assert r.success and info["success"]
    assert r.steps_to_success == t + 1
    assert r.stall_steps == 0 and r.inferences == -(-r.steps // 50)


def test_determinism_real_metaworld_async_delay(push_env):
    env = push_env
    pol = OraclePolicy(env, chunk_size=20)
    cfg = ExecutionConfig(strategy="async", aggregate_fn_name="weighted_average", actions_per_chunk=20,
                          chunk_size_threshold=0.5, max_steps=60)
    runs = [VirtualClockExecutor(env, pol, cfg, 3).run_episode(5) for _ in range(2)]
    a, b = runs
    assert (a.success, a.steps, a.steps_to_success, a.episode_return, a.inferences, a.stall_steps) == (
        b.success, b.steps, b.steps_to_success, b.episode_return, b.inferences, b.stall_steps)
    np.testing.assert_array_equal(a.trace.actions, b.trace.actions)
    assert a.stall_steps == 3  # only the first request's delay


def test_oracle_prefix_strategy_replays_queue_then_plans(push_env):
    from chunkwise.runtime import get_strategy

    env = push_env
    spec = get_strategy("oracle_prefix")
    pol = spec.wrap_policy(OraclePolicy(env, chunk_size=50))
    assert pol.metadata.uses_prefix
    cfg = spec.apply(ExecutionConfig(actions_per_chunk=50))
    assert (cfg.strategy, cfg.aggregate_fn_name, cfg.prefix) == ("async", "latest_only", True)
    r = VirtualClockExecutor(env, pol, cfg, 8).run_episode(0)
    # only the first chunk's 8-step wait costs time: the rest is the expert, exactly
    assert r.success and r.stall_steps == 8 and r.steps_to_success == 64 + 8
    with pytest.raises(ValueError, match="scripted"):
        spec.wrap_policy(object())
