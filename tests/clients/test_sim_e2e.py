"""End to end: a real `chunkwise serve` process, a SimClient running MetaWorld in real time."""

import json

import pytest

from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.clients.sim_client import SimClient
from chunkwise.envs import MetaWorldEnvConfig, make_env
from chunkwise.scheduling.config import ExecutionConfig
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
        sim = SimClient(env, rp, ExecutionConfig(actions_per_chunk=10, chunk_size_threshold=0.5,
                                                 aggregate_fn_name="weighted_average"), time_scale=2.0)
        try:
            results = []
            for seed in (0, 2):
                st = sim.run_episode(seed=seed)
                results.append(st)
                tr = st.trace
                arrived = tr.delay >= 0
                assert arrived.sum() >= st.steps // 10 and not st.info["errors"]
                # every executed action came from a chunk that had arrived by then
                assert (tr.chunk[~tr.stall] < arrived.sum()).all()
                assert st.info["rtt_ms"] and all(m >= 0 for m in st.info["model_ms"])
        finally:
            sim.close()
            env.close()
    assert any(r.success for r in results), [(r.success, r.steps) for r in results]
    assert all(r.steps < 500 for r in results if r.success)


def test_chunkwise_eval_cli_with_server_reports_like_a_local_run(expert_server, tmp_path, capsys):
    from chunkwise.eval.run import main

    rc = main([f"--server={expert_server.address}", "--env.type=metaworld", "--env.task=push-v3", "--n_episodes=2",
               "--actions_per_chunk=10", "--chunk_size_threshold=0.5", "--aggregate_fn_name=weighted_average",
               "--time_scale=4", f"--output_dir={tmp_path}"])
    assert rc == 0
    out = capsys.readouterr().out
    for line in ("success rate", "Wilson 95%", "seam |a_t-a_t-1|", "chunk delay", "round trip ms"):
        assert line in out, out
    result = json.loads((tmp_path / "eval.json").read_text())
    s = result["summary"]
    # the same summary keys as the virtual clock's, plus what the wall clock measured
    assert s["n_episodes"] == 2 and s["success_ci_low"] <= s["success_rate"] <= s["success_ci_high"]
    assert s["seam_discontinuity"]["n"] >= 1 and sum(s["delay_counts"].values()) >= 2
    assert all(len(e["delays"]) >= 1 for e in result["episodes"])
    r = result["remote"]
    assert r["round_trip_ms"]["p50"] > 0 and r["round_trip_ms"]["p50"] <= r["round_trip_ms"]["p99"]
    assert result["execution"]["prefix_delay"] == "estimated"


def test_virtual_clock_executor_runs_unchanged_against_a_server(expert_server):
    """RemotePolicy is a Policy: the deterministic executor drives a served policy as is,
    and gets the same rollout as with the same policy in-process."""
    from chunkwise.policies.testing import ExpertPolicy, TestPolicyConfig
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
