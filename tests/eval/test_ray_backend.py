"""``--backend=ray``: the same results as the process pool, bit for bit; the checkpoint is
shipped once through the object store; a lost worker's task is retried; without ray the
flag is a one-line error and ``import chunkwise`` never imports ray.

One local Ray (2 CPUs, small object store) is shared by the module; its tests are short
episodes so the module stays well under a minute on 2 busy cores."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from chunkwise.eval import ray_backend, rollouts
from chunkwise.scheduling.delay import FixedDelay
from chunkwise.eval import run as eval_run
from chunkwise.eval import sweep as eval_sweep

_SMALL = dict(tasks="drawer-close-v3", delays="2", strategies="sync,latest_only", n_episodes=3, plot=False)


def _env(steps: int):
    return replace(eval_sweep.default_env(), max_episode_steps=steps)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """A local Ray for the module; its workers also see a folder of test plugin modules."""
    ray = pytest.importorskip("ray")
    plugins = tmp_path_factory.mktemp("plugins")
    marker = plugins / "crashed-once"
    (plugins / "chunkwise_test_crash_once.py").write_text(textwrap.dedent(f"""
        import os
        from pathlib import Path

        _MARKER = Path({str(marker)!r})
        if not _MARKER.exists():  # the first worker to import this dies (a lost worker)
            _MARKER.write_text(str(os.getpid()))
            os._exit(1)
    """))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH")])))
        mp.setenv("MUJOCO_GL", "egl")
        ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield {"ray": ray, "marker": marker}
    ray.shutdown()


def _ray_cfg(**kw) -> dict:
    return {"backend": "ray", "ray": ray_backend.RayConfig(**kw)}


def test_scripted_sweep_on_ray_equals_the_pool(ray_session, one_torch_thread):
    local = eval_sweep.sweep(eval_sweep.SweepConfig(env=_env(20), n_workers=1, **_SMALL), progress=False)
    # blocks of 2 over cells of 3 episodes: blocks never straddle a cell's (env, policy) config
    on_ray = eval_sweep.sweep(eval_sweep.SweepConfig(env=_env(20), **_SMALL, **_ray_cfg(episodes_per_task=2)),
                              progress=False)
    assert on_ray == local
    assert [r["summary"]["n_episodes"] for r in on_ray] == [3, 3]


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory, metaworld_info):
    """A tiny untrained flow checkpoint in a training run's layout, plus optimizer state."""
    import torch

    from chunkwise.policies.flow.config import FlowConfig

    torch.manual_seed(0)
    cfg = FlowConfig(chunk_size=8, n_action_steps=4, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                     delta_n_blocks=1, rtc_max_delay=4)
    run = tmp_path_factory.mktemp("run")
    step = run / "checkpoints" / "step_0000010"
    cfg.make_policy(metaworld_info("drawer-close-v3", action_std=1.0)).save_pretrained(step)
    (step / "optimizer.safetensors").write_bytes(b"not needed to load a policy")
    (run / "checkpoints" / "last").symlink_to("step_0000010")
    return run


def test_checkpoint_files_are_the_policy_files_only(flow_checkpoint):
    files = ray_backend.checkpoint_files(flow_checkpoint)  # run dir -> checkpoints/last -> step dir
    assert sorted(files) == ["config.json", "model.safetensors", "stats.safetensors"]
    assert ray_backend.files_key(files) == ray_backend.files_key(dict(files))


def test_checkpoint_sweep_on_ray_equals_the_pool_and_is_shipped_once(ray_session, flow_checkpoint, tmp_path,
                                                                     monkeypatch, one_torch_thread):
    ray = ray_session["ray"]
    kw = dict(_SMALL, policy=rollouts.PolicySource(path=str(flow_checkpoint)), actions_per_chunk=4, n_episodes=2)
    local = eval_sweep.sweep(eval_sweep.SweepConfig(env=_env(20), n_workers=1, **kw), progress=False)

    # once the bytes are in the object store the checkpoint is moved away: the workers can
    # only load what was shipped
    puts = []
    real_put = ray.put
    moved = tmp_path / "moved"

    def put_then_move(value, *a, **k):
        puts.append(sorted(value))
        ref = real_put(value, *a, **k)
        flow_checkpoint.rename(moved)
        return ref

    monkeypatch.setattr(ray, "put", put_then_move)
    cfg = eval_sweep.SweepConfig(env=_env(20), **kw, **_ray_cfg())
    try:
        on_ray = eval_sweep.sweep(cfg, progress=False)
    finally:
        if moved.exists():
            moved.rename(flow_checkpoint)
    assert puts == [["config.json", "model.safetensors", "stats.safetensors"]]  # one put for 4 tasks
    assert on_ray == local


def test_a_lost_worker_is_retried(ray_session, one_torch_thread):
    base = eval_sweep.SweepConfig(env=_env(15), **dict(_SMALL, strategies="latest_only", delays="2"))
    execution, strat, plugins = eval_sweep.resolve_strategy("latest_only", base.base_execution())
    jobs = [rollouts.EpisodeJob(base.env, base.policy, execution, FixedDelay(2), s, strat, plugins)
            for s in (0, 1)]
    expected = [rollouts.run_job(j) for j in jobs]
    crashing = [replace(j, plugin_modules=("chunkwise_test_crash_once",)) for j in jobs]
    assert not ray_session["marker"].exists()
    got = list(rollouts.iter_jobs(crashing, backend="ray", ray=ray_backend.RayConfig(max_retries=2)))
    assert ray_session["marker"].exists()  # a worker did die
    assert got == expected


def test_eval_on_ray_shows_progress_and_matches_the_pool(ray_session, one_torch_thread, capsys):
    argv = ["--env.task=drawer-close-v3", "--env.max_episode_steps=20", "--n_episodes=2", "--strategy=latest_only",
            "--inference_delay=2"]
    local = eval_run.evaluate(eval_run.parse_cli(eval_run.EvalConfig, argv, "eval"), progress=False)
    on_ray = eval_run.evaluate(eval_run.parse_cli(eval_run.EvalConfig, argv + ["--backend=ray"], "eval"))
    assert "2/2" in capsys.readouterr().err  # tqdm over completed episodes
    assert on_ray["episodes"] == local["episodes"] and on_ray["summary"] == local["summary"]
    assert on_ray["config"]["backend"] == "ray"


# ----------------------------------------------------------------- without a Ray session


def test_blocks_never_mix_configs_and_respect_the_size():
    a, b = object(), object()
    job = lambda env: type("J", (), {"env": env, "policy": None})()  # noqa: E731
    jobs = [job(a)] * 5 + [job(b)] * 2
    assert ray_backend._blocks(jobs, 2) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert ray_backend._blocks(jobs, 1) == [(i, i + 1) for i in range(7)]


def test_ray_backend_without_ray_is_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ray_backend, "ray_available", lambda: False)
    rc = eval_sweep.main(["--backend=ray", "--tasks=drawer-close-v3", "--n_episodes=1",
                          f"--output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("chunkwise sweep: error: ") and "pip install -e '.[ray]'" in err[0]
    assert eval_run.main(["--backend=ray", "--n_episodes=1"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_bad_backend_flags(capsys):
    assert eval_sweep.main(["--backend=dask"]) == 2
    assert "unknown --backend='dask'; valid: pool, ray" in capsys.readouterr().err
    assert eval_run.main(["--backend=ray", "--server=127.0.0.1:1"]) == 2
    assert "virtual clock" in capsys.readouterr().err
    assert eval_sweep.main(["--backend=ray", "--ray.num_cpus_per_task=0"]) == 2
    assert "--ray.num_cpus_per_task must be > 0" in capsys.readouterr().err


def test_importing_chunkwise_never_imports_ray():
    code = ("import sys, chunkwise, chunkwise.cli, chunkwise.eval.sweep, chunkwise.eval.run, "
            "chunkwise.eval.ray_backend; chunkwise.eval.sweep.SweepConfig(backend='pool'); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_address_is_the_flag_else_ray_address_else_a_new_local_ray(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_backend.RayConfig().resolved_address() == "local"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_backend.RayConfig().resolved_address() == "10.0.0.5:6379"
    assert ray_backend.RayConfig(address="auto").resolved_address() == "auto"
