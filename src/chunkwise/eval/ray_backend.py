"""``--backend=ray``: run episode jobs as Ray tasks, on a laptop or an existing cluster.

    chunkwise sweep --backend=ray --ray.address=auto ...   # join `ray start --head`'s cluster
    chunkwise sweep --backend=ray ...                      # RAY_ADDRESS if set, else a local Ray

Each task runs ``episodes_per_task`` consecutive jobs of one (env, policy) config with
``rollouts.run_job``, so a worker process builds its env and policy once and reuses them
for its later tasks (``rollouts._CACHE``), as a pool worker does. Results are put back in
job order: the same jobs give the same numbers as ``iter_jobs`` with a process pool.

A checkpoint policy is shipped once: the driver reads the checkpoint's policy files
(``config.json`` and its ``*.safetensors``, not optimizer/replay state) and ``ray.put``s
their bytes; each worker process fetches them the first time it needs them, writes them
to a temporary directory and loads that with ``chunkwise.policies.load`` (no pickled
model: the weights cross the network as safetensors bytes, and only our own dataclass
jobs and ``EpisodeMetrics`` results go through Ray's serializer). A worker that dies or
is lost is retried by Ray (``max_retries``); an exception inside an episode is not
retried (it would fail the same way) and is raised on the driver.

Nothing here imports ray at module level: ``import chunkwise`` never imports it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from chunkwise.common.ray import (  # noqa: F401 - re-exported: eval and sweep import them from here
    BACKENDS,
    INSTALL_HINT,
    RayConfig,
    RaySession,
    check_backend,
    ray_available,
)

# written by training runs next to the policy files; not needed to load a policy
_TRAINING_ONLY = frozenset({"optimizer.safetensors", "learner.safetensors", "replay.safetensors", "rng.safetensors"})


# --------------------------------------------------------------------------- checkpoints


def checkpoint_files(path: str | Path) -> dict[str, bytes]:
    """The files ``chunkwise.policies.load`` needs, by name: config.json and the policy's
    safetensors (a run dir resolves to its newest checkpoint, ``last`` to its target)."""
    from chunkwise.policies.registry import checkpoint_dir

    ckpt = Path(os.path.realpath(checkpoint_dir(path)))
    names = ["config.json"] + sorted(
        p.name for p in ckpt.glob("*.safetensors") if p.is_file() and p.name not in _TRAINING_ONLY
    )
    return {name: (ckpt / name).read_bytes() for name in names}


def files_key(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


_LOCAL_CHECKPOINTS: dict[str, str] = {}  # files_key -> temp dir, per worker process


def _materialize(key: str, ref_box: list[Any]) -> str:
    """The temp dir holding checkpoint ``key`` in this worker; fetched once per process."""
    if key not in _LOCAL_CHECKPOINTS:
        import atexit
        import shutil
        import tempfile

        import ray

        files = ray.get(ref_box[0])
        tmp = tempfile.mkdtemp(prefix=f"chunkwise-ckpt-{key}-")
        for name, data in files.items():
            (Path(tmp) / Path(name).name).write_bytes(data)
        atexit.register(shutil.rmtree, tmp, True)
        _LOCAL_CHECKPOINTS[key] = tmp
    return _LOCAL_CHECKPOINTS[key]


# --------------------------------------------------------------------------- the task


def _run_block(jobs: list[Any], checkpoint: tuple[str, list[Any]] | None, threads: int) -> tuple[list[Any], list[Any]]:
    """Body of one Ray task: ``run_job`` for each job, in order (inside a worker); also
    returns [node id, seconds in ``run_job``, seconds fetching the checkpoint]."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from chunkwise.eval import rollouts

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    import time

    import ray

    t0 = time.perf_counter()
    if checkpoint is not None:
        key, ref_box = checkpoint
        local = _materialize(key, ref_box)
        jobs = [replace(j, policy=replace(j.policy, path=local)) for j in jobs]
    t1 = time.perf_counter()
    results = [rollouts.run_job(j) for j in jobs]
    t2 = time.perf_counter()
    # (node, seconds in run_job, seconds fetching the checkpoint): the driver's run summary
    return [ray.get_runtime_context().get_node_id(), t2 - t1, t1 - t0], results


def _blocks(jobs: Sequence[Any], size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive jobs sharing (env, policy), at most ``size`` long."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(jobs) + 1):
        if i == len(jobs) or i - start >= size or (jobs[i].env, jobs[i].policy) != (jobs[start].env, jobs[start].policy):
            out.append((start, i))
            start = i
    return out


@dataclass
class RunStats:
    """What one ``iter_jobs_ray`` run did (``LAST_RUN``; printed by ``--ray.summary``).

    ``episode_seconds`` is the time spent inside ``run_job`` summed over all tasks; the
    rest of ``wall_seconds x cluster_cpus`` is Ray's overhead plus idle CPUs (start-up,
    worker processes importing chunkwise, the tail of the run), reported per episode."""

    tasks: int = 0
    episodes: int = 0
    episodes_per_node: dict[str, int] = field(default_factory=dict)
    episode_seconds: float = 0.0
    fetch_seconds: float = 0.0
    wall_seconds: float = 0.0
    cluster_cpus: float = 0.0

    def add(self, node: str, n: int, run_s: float, fetch_s: float) -> None:
        self.episodes += n
        self.episodes_per_node[node] = self.episodes_per_node.get(node, 0) + n
        self.episode_seconds += run_s
        self.fetch_seconds += fetch_s

    def overhead_per_episode(self) -> float:
        """Seconds per episode of CPU-slot time not spent in an episode (>= 0)."""
        slots = self.wall_seconds * max(self.cluster_cpus, 1.0)
        return max(0.0, slots - self.episode_seconds) / max(self.episodes, 1)

    def line(self) -> str:
        nodes = ", ".join(f"{k[:8]}: {v}" for k, v in sorted(self.episodes_per_node.items()))
        per_ep = self.episode_seconds / max(self.episodes, 1)
        return (f"ray: {self.episodes} episodes in {self.tasks} tasks on {len(self.episodes_per_node)} nodes "
                f"({nodes}); {self.wall_seconds:.1f} s wall on {self.cluster_cpus:g} CPUs, "
                f"{per_ep:.3f} s per episode in run_job, {self.overhead_per_episode():.3f} s per episode "
                f"of CPU time outside episodes (start-up, imports, idle tail)")


LAST_RUN: RunStats | None = None  # the last iter_jobs_ray run of this process


def iter_jobs_ray(
    jobs: Sequence[Any], cfg: RayConfig | None = None, on_done: Callable[[int], None] | None = None
) -> Iterator[Any]:
    """Yield ``run_job(job)`` for every job, in job order, computed by Ray tasks.

    ``on_done(n)`` is called as each task completes (n = its episodes), in completion order:
    a progress bar over finished episodes, while results still come out in job order.
    """
    cfg = cfg or RayConfig()
    jobs = list(jobs)
    if not jobs:
        return
    t_start = time.perf_counter()
    session = RaySession(cfg)
    ray = session.ray
    try:
        shipped: dict[str, tuple[str, list[Any]]] = {}  # driver path -> (key, [ObjectRef])
        for job in jobs:
            path = job.policy.path
            if job.policy.type != "scripted" and path and path not in shipped:
                files = checkpoint_files(path)
                # boxed in a list so Ray passes the ref itself: a worker fetches it only once
                shipped[path] = (files_key(files), [ray.put(files)])
        remote = ray.remote(_run_block).options(
            num_cpus=cfg.num_cpus_per_task, max_retries=cfg.max_retries, retry_exceptions=False
        )
        threads = max(1, int(cfg.num_cpus_per_task))
        blocks = _blocks(jobs, cfg.episodes_per_task)
        refs = []
        for start, stop in blocks:
            first = jobs[start]
            ckpt = shipped.get(first.policy.path) if first.policy.type != "scripted" else None
            refs.append(remote.remote(jobs[start:stop], ckpt, threads))
        index = {ref: i for i, ref in enumerate(refs)}
        done: dict[int, list[Any]] = {}
        pending = list(refs)
        next_block = 0
        stats = RunStats(tasks=len(refs))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                (node, run_s, fetch_s), done[i] = ray.get(ref)
                stats.add(node, len(done[i]), run_s, fetch_s)
                if on_done is not None:
                    on_done(len(done[i]))
            while next_block in done:
                yield from done.pop(next_block)
                next_block += 1
        stats.wall_seconds = time.perf_counter() - t_start
        stats.cluster_cpus = float(ray.cluster_resources().get("CPU", 0.0))
        global LAST_RUN
        LAST_RUN = stats
        if cfg.summary:
            print(stats.line(), file=sys.stderr, flush=True)
    finally:
        session.close()


def run_jobs_ray(
    jobs: Sequence[Any], cfg: RayConfig | None = None, desc: str = "episodes", progress: bool = True
) -> list[Any]:
    """All results in job order; a tqdm bar over completed episodes when ``progress``."""
    if not progress:
        return list(iter_jobs_ray(jobs, cfg))
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc=desc, unit="ep", dynamic_ncols=True) as bar:
        return list(iter_jobs_ray(jobs, cfg, on_done=bar.update))
