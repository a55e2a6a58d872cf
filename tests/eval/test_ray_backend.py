"""``--backend=ray``: the same results as the process pool, bit for bit; the checkpoint is
shipped once through the object store; a lost worker's task is retried; without ray the
flag is a one-line error and ``import chunkwise`` never imports ray.

One local Ray (2 CPUs, small object store) is shared by most tests; a real two-node
cluster (`ray start --head` + `ray start --address=...`, one CPU each, own temp dir, port
and auth token, stopped at the end) runs a sweep that must equal the pool's episode for
episode, once undisturbed and once with a worker SIGKILLed inside an episode task."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import replace
from pathlib import Path

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
    import chunkwise.common.ray as common_ray

    monkeypatch.setattr(common_ray, "ray_available", lambda: False)
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


# ----------------------------------------------------------------- a two-node cluster (`ray start`)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(log, text: str, proc, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = log.read_text(errors="replace") if log.exists() else ""
        if text in out:
            return out
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{out[-2000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"no {text!r} from ray start in {timeout} s:\n{out[-2000:]}")


def _stop(procs) -> None:
    """SIGTERM each `ray start --block` process group we started, then SIGKILL what is left
    of those groups and of their descendants (raylet, gcs and workers)."""
    left = [pid for pid, _ in _descendants([p.pid for p in procs])]
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_node_cluster():
    """`ray start --head` plus a second `ray start --address=...` node on this machine, one
    CPU each, in their own temp dirs and ports, with their own auth token; both stopped at
    the end (even on failure). -> (address, env for clients)."""
    pytest.importorskip("ray")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    tmp = Path(tempfile.mkdtemp(prefix="cwray-", dir="/tmp"))  # short: Ray's unix sockets live here
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex, MUJOCO_GL="egl",
               RAY_USAGE_STATS_ENABLED="0")
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats"]
    procs: list = []
    try:
        port = _free_port()
        head_log = tmp / "head.log"
        with open(head_log, "w") as f:
            procs.append(subprocess.Popen(
                [ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={tmp / 'head'}",
                 "--include-dashboard=false", "--dashboard-agent-listen-port=0", *common],
                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
        out = _wait_for(head_log, "Ray runtime started", procs[0], 120)
        match = re.search(r"ray start --address='([^']+)'", out)
        address = match.group(1) if match else f"127.0.0.1:{port}"
        worker_log = tmp / "worker.log"
        with open(worker_log, "w") as f:
            procs.append(subprocess.Popen(
                [ray_bin, "start", f"--address={address}", f"--temp-dir={tmp / 'worker'}",
                 "--dashboard-agent-listen-port=0", *common],
                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for(worker_log, "Ray runtime started", procs[1], 120)
        yield {"address": address, "env": env, "pgids": [p.pid for p in procs]}
    finally:
        _stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def _cluster_sweep(cluster, out: Path, timeout: float = 150, during=None) -> tuple[list, str]:
    """`chunkwise sweep --backend=ray --ray.address=<cluster>` in a subprocess -> (rows, stderr)."""
    cmd = [sys.executable, "-c", "import sys; from chunkwise.cli import main; sys.exit(main())", "sweep",
           "--tasks=drawer-close-v3", "--delays=0,2", "--strategies=latest_only", "--n_episodes=4",
           "--env.max_episode_steps=20", "--plot=false", "--progress=false", "--backend=ray",
           f"--ray.address={cluster['address']}", f"--output_dir={out}"]
    proc = subprocess.Popen(cmd, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            during(proc)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return json.loads((out / "results.json").read_text())["rows"], err


@functools.lru_cache(maxsize=1)
def _pool_rows_json() -> str:
    cfg = eval_sweep.SweepConfig(env=_env(20), tasks="drawer-close-v3", delays="0,2", strategies="latest_only",
                                 n_episodes=4, plot=False, n_workers=2)
    return json.dumps(eval_sweep.sweep(cfg, progress=False))


def _pool_rows() -> list:
    """The same sweep with the process pool (2 workers), once per module."""
    return json.loads(_pool_rows_json())


def test_two_node_cluster_sweep_equals_the_pool(two_node_cluster, tmp_path, one_torch_thread):
    rows, err = _cluster_sweep(two_node_cluster, tmp_path / "out")
    summary = [line for line in err.splitlines() if line.startswith("ray: ")]
    assert summary and " episodes in 8 tasks on 2 nodes " in summary[-1], err[-2000:]  # both nodes ran episodes
    assert rows == _pool_rows()  # every episode, in order, number for number


def _descendants(roots: list[int]) -> list[tuple[int, str]]:
    """(pid, cmdline) of every descendant of ``roots`` (the `ray start` processes we started)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], set(roots)
    while frontier:
        frontier = {pid for pid, pp in parent.items() if pp in frontier}
        for pid in frontier:
            with contextlib.suppress(OSError):
                found.append((pid, (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
    return found


def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_episode(two_node_cluster, tmp_path, one_torch_thread):
    killed: list[int] = []

    def kill_a_running_task(proc):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not killed:
            for pid, cmd in _descendants(two_node_cluster["pgids"]):
                if cmd.startswith("ray::_run_block"):  # a worker inside an episode task
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    rows, err = _cluster_sweep(two_node_cluster, tmp_path / "out", during=kill_a_running_task)
    assert killed, f"no running task found to kill among {_descendants(two_node_cluster['pgids'])}"
    assert " episodes in 8 tasks " in err and "ray: 8 episodes" in err, err[-2000:]
    assert [r["summary"]["n_episodes"] for r in rows] == [4, 4]
    assert rows == _pool_rows()
