"""End to end: a real `chunkwise serve` process, a SimClient running MetaWorld in real time."""

from types import SimpleNamespace

import numpy as np
import pytest

from chunkwise.clients.realtime import ClientConfig
from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.clients.sim_client import SimClient, evaluate_remote
from chunkwise.envs import MetaWorldEnvConfig, make_env
from chunkwise.serving.process import ServerProcess


@pytest.fixture(scope="module")
def expert_server():
    # The MetaWorld scripted expert evaluated on the served observation (no env in the
    # server); each chunk holds its action for up to 10 steps, so success needs the
    # client to re-plan on time.
    with ServerProcess(["--policy.type=expert", "--policy.task=push-v3", "--policy.chunk_size=10"],
                       lifetime_s=120) as srv:
        yield srv


def test_sim_client_push_v3_succeeds_against_a_real_server(expert_server):
    env = make_env(MetaWorldEnvConfig(task="push-v3"))
    with RemotePolicy(expert_server.address) as rp:
        sim = SimClient(env, rp, ClientConfig(actions_per_chunk=10, chunk_size_threshold=0.5,
                                              aggregate_fn_name="weighted_average", time_scale=2.0))
        try:
            results = []
            for seed in (0, 2):
                st = sim.run_episode(seed=seed, record=True)
                results.append(st)
                labels = [lb for lb, _ in st.executed]
                assert labels == sorted(set(labels)), "executed labels must strictly increase"
                assert all(lb < st.steps for lb in labels)
                assert st.chunks >= st.steps // 10 and not st.errors
                assert st.rtt_ms and all(m >= 0 for m in st.model_ms)
        finally:
            sim.close()
            env.close()
    assert any(r.success for r in results), [(r.success, r.steps) for r in results]
    assert all(r.steps < 500 for r in results if r.success)


def test_run_eval_reports_success_reward_and_latency(expert_server, capsys):
    cfg = SimpleNamespace(server=expert_server.address, env=MetaWorldEnvConfig(task="push-v3"), n_episodes=2, seed=0,
                          actions_per_chunk=10, chunk_size_threshold=0.5, aggregate_fn_name="latest_only",
                          time_scale=4.0)
    summary = evaluate_remote(cfg)
    assert summary["n_episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0
    assert summary["mean_reward"] > 0
    for key in ("round_trip_ms", "server_model_ms"):
        assert set(summary[key]) == {"p50", "p90", "p99"}
        assert summary[key]["p50"] <= summary[key]["p99"]
    assert summary["round_trip_ms"]["p50"] > summary["server_model_ms"]["p50"]
    assert '"success_rate"' in capsys.readouterr().out


def test_chunkwise_eval_cli_with_server(expert_server, tmp_path, capsys):
    from chunkwise.eval.run import main

    rc = main([f"--server={expert_server.address}", "--env.type=metaworld", "--env.task=push-v3", "--n_episodes=1",
               "--actions_per_chunk=10", "--chunk_size_threshold=0.5", "--aggregate_fn_name=weighted_average",
               f"--output_dir={tmp_path}"])
    assert rc == 0
    import json

    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["n_episodes"] == 1 and summary["round_trip_ms"]["p50"] > 0


def test_virtual_clock_executor_runs_unchanged_against_a_server(expert_server):
    """RemotePolicy is a Policy: the deterministic executor drives a served policy as is,
    and gets the same rollout as with the same policy in-process."""
    from chunkwise.policies.testing import ExpertPolicy, TestPolicyConfig
    from chunkwise.runtime.config import ExecutionConfig
    from chunkwise.runtime.virtual_clock import VirtualClockExecutor

    exe_cfg = ExecutionConfig(strategy="async", aggregate_fn_name="weighted_average", actions_per_chunk=10,
                              chunk_size_threshold=0.5, max_steps=150)
    env = make_env(MetaWorldEnvConfig(task="push-v3"))
    try:
        with RemotePolicy(expert_server.address) as rp:
            remote = VirtualClockExecutor(env, rp, exe_cfg, delay=2).run_episode(seed=0)
        local_policy = ExpertPolicy(TestPolicyConfig(type="expert", task="push-v3", chunk_size=10))
        local = VirtualClockExecutor(env, local_policy, exe_cfg, delay=2).run_episode(seed=0)
    finally:
        env.close()
    assert remote.inferences > 3
    assert (remote.success, remote.steps, remote.inferences, remote.stall_steps) == (
        local.success, local.steps, local.inferences, local.stall_steps)
    assert remote.episode_return == pytest.approx(local.episode_return, rel=1e-6)
