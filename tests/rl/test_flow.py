"""The whole flow, small: ``chunkwise rl`` -> ``eval`` / ``sweep --policy.path=<rl run dir>``
-> ``serve --policy.path=<rl run dir>`` in a real server process, remote == local, and
``chunkwise eval --server`` against it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chunkwise.rl.train import main as rl_main

ENV = ["--env.type=metaworld", "--env.task=reach-v3", "--env.max_episode_steps=60"]


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rl") / "run"
    assert rl_main([
        *ENV, "--actor=act", "--critic=chunk", "--chunk_size=5", "--actor_net.dim_model=32",
        "--actor_net.dim_feedforward=64", "--critic_net.hidden_dims=[64,64]", "--batch_size=32",
        "--demos.scripted_episodes=3", "--bc_weight=10", "--online_steps=240", "--eval_every=240",
        "--eval_episodes=4", "--save_every=120", "--progress=false", f"--output_dir={out}",
    ]) == 0
    return out


def test_eval_of_the_run_dir_reproduces_the_runs_own_evaluation(rl_run: Path, tmp_path: Path) -> None:
    from chunkwise.eval.run import main as eval_main

    last_eval = [json.loads(x) for x in (rl_run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x][-1]
    assert last_eval["env_steps"] >= 240
    assert last_eval["success_rate"] > 0  # (seed 0: 1 of 4, at step 49) else equal steps would be trivial
    # the RL evaluation: sync, whole chunk open-loop, delay 0, seeds 1_000_000 + i
    assert eval_main([*ENV, f"--policy.path={rl_run}", "--strategy=sync", "--inference_delay=0", "--n_episodes=4",
                      "--seed=1000000", f"--output_dir={tmp_path}"]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["execution"]["actions_per_chunk"] == 5  # the checkpoint's H
    assert res["summary"]["success_rate"] == pytest.approx(last_eval["success_rate"])
    steps = [e["steps"] for e in res["episodes"]]
    assert np.mean(steps) == pytest.approx(last_eval["episode_steps"])


def test_sweep_runs_the_rl_checkpoint(rl_run: Path, tmp_path: Path) -> None:
    from chunkwise.eval.sweep import main as sweep_main

    assert sweep_main([*ENV, f"--policy.path={rl_run}", "--tasks=reach-v3", "--delays=0,2",
                       "--strategies=sync,latest_only", "--actions_per_chunk=5", "--n_episodes=2", "--n_workers=1",
                       "--plot=false", "--progress=false", f"--output_dir={tmp_path}"]) == 0
    assert (tmp_path / "results.json").is_file()


def test_served_rl_run_matches_local_inference(rl_run: Path) -> None:
    from chunkwise.clients.remote_policy import RemotePolicy
    from chunkwise.envs import MetaWorldEnvConfig, make_env
    from chunkwise.policies import load
    from chunkwise.serving.process import ServerProcess
    from chunkwise.types import stack_observations

    local = load(rl_run)
    env = make_env(MetaWorldEnvConfig(task="reach-v3", max_episode_steps=60))
    try:
        obs = [env.reset(seed=s) for s in range(3)]
    finally:
        env.close()
    with ServerProcess([f"--policy.path={rl_run}"], lifetime_s=60) as srv:
        assert "policy=rl_sac chunk_size=5" in srv.output[0]
        with RemotePolicy(srv.address) as remote:
            assert remote.metadata == local.metadata
            for o in obs:
                np.testing.assert_allclose(remote.predict_chunk(stack_observations([o])),
                                           local.predict_chunk(stack_observations([o])), rtol=1e-5, atol=1e-6)
            batch = stack_observations(obs)
            np.testing.assert_allclose(remote.predict_chunk(batch), local.predict_chunk(batch), rtol=1e-5, atol=1e-6)
        # and a simulator against it, as a user would: chunkwise eval --server
        from chunkwise.eval.run import main as eval_main

        assert eval_main([*ENV, f"--server={srv.address}", "--n_episodes=2", "--strategy=sync",
                          "--time_scale=4"]) == 0
