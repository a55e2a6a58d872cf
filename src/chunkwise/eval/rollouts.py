"""Episode jobs and running them, inline or across processes (deterministic order).

A job is everything one episode needs, as plain picklable config (no env, no model):
worker processes build their own env and policy once and reuse them for later jobs with
the same (env, policy) config. Results come back in job order whatever the number of
workers, so the same seeds give the same result files. Episode i of a configuration uses
seed ``seed + i`` for every strategy and delay: comparisons are paired (same initial
states), which shrinks the noise of differences between strategies.

Process pool: ``multiprocessing`` with the "forkserver" start method where available
(else "spawn"), never "fork" (MuJoCo/GL state must not be shared). The pool only moves
these dataclasses between our own processes. ``backend="ray"`` runs the same jobs as Ray
tasks instead (``chunkwise.eval.ray_backend``, imported only then), with the same results.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.eval.metrics import EpisodeMetrics, episode_metrics
from chunkwise.policies.base import Policy
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import get_strategy
from chunkwise.runtime.virtual_clock import VirtualClockExecutor
from chunkwise.scheduling.delay import DelayModel

if TYPE_CHECKING:
    from chunkwise.eval.ray_backend import RayConfig


@dataclass
class PolicySource:
    """Which policy to run: ``--policy.type=scripted --policy.chunk_size=50`` (the oracle,
    default) or ``--policy.path=<checkpoint or run dir>`` (``chunkwise.policies.load``).

    ``--policy.type`` names a policy family, as in ``chunkwise train`` and ``serve``: with a
    path it is checked against the checkpoint's own type (``checkpoint`` = any type)."""

    type: str = "scripted"
    path: str | None = None
    chunk_size: int = 50  # scripted only: the oracle's look-ahead H

    def __post_init__(self) -> None:
        if self.path is not None and self.type == "scripted":
            self.type = "checkpoint"  # --policy.path alone selects a checkpoint
        if self.type not in ("scripted", "checkpoint"):
            from chunkwise.policies.registry import families

            fams = families()
            loadable = sorted(n for n, f in fams.items() if f.loader)
            if self.type not in fams:
                raise ValueError(f"unknown --policy.type={self.type!r}; valid: scripted, checkpoint, {', '.join(loadable)}")
            if fams[self.type].loader is None:
                raise ValueError(
                    f"--policy.type={self.type} is a test policy: serve it (chunkwise serve --policy.type={self.type}) "
                    "and evaluate with --server=host:port"
                )
        if self.type != "scripted" and not self.path:
            raise ValueError(f"--policy.type={self.type} needs --policy.path=<checkpoint dir or run dir>")
        if self.chunk_size <= 0:
            raise ValueError(f"policy.chunk_size must be positive, got {self.chunk_size}")

    def check_type(self) -> None:
        """A checkpoint of another family than --policy.type names is an error."""
        if self.type in ("scripted", "checkpoint"):
            return
        from chunkwise.policies.registry import checkpoint_type

        found = checkpoint_type(self.path or "")
        if found != self.type:
            raise ValueError(f"--policy.path={self.path} is a {found!r} checkpoint, not {self.type!r} (--policy.type)")

    def build(self, env: ChunkEnv) -> Policy:
        if self.type == "scripted":
            from chunkwise.policies.scripted import OraclePolicy

            return OraclePolicy(env, chunk_size=self.chunk_size)
        from chunkwise.policies import load

        self.check_type()
        policy = load(self.path)  # type: ignore[arg-type]
        check_policy_matches_env(policy, env, self.path or "")
        return policy


def task_mismatch(policy: Policy, env: ChunkEnv, name: str = "policy") -> str | None:
    """A warning when the policy was trained on another task than the env's, else None."""
    trained = dict(policy.metadata.extra).get("task")
    task = getattr(env, "task", None)
    if trained and task and str(trained) != str(task):
        return f"warning: {name} was trained on {trained}, evaluating it on {task}"
    return None


def check_policy_matches_env(policy: Policy, env: ChunkEnv, name: str = "policy") -> None:
    """Clear error (every mismatch, prefixed with ``name``) if the policy does not fit the env."""
    from chunkwise.policies.common.compat import IncompatiblePolicyError, check_compatible

    try:
        check_compatible(policy.metadata, env)
    except IncompatiblePolicyError as err:
        raise IncompatiblePolicyError(f"{name}: {err}") from None


@dataclass(frozen=True)
class EpisodeJob:
    env: EnvConfig
    policy: PolicySource
    execution: ExecutionConfig
    delay: DelayModel
    seed: int
    strategy: str | None = None  # registry name whose wrap_policy applies (None: plain)
    plugin_modules: tuple[str, ...] = ()  # imported in workers (strategies registered there)


_CACHE: dict[str, tuple[ChunkEnv, Policy]] = {}


def _env_and_policy(job: EpisodeJob) -> tuple[ChunkEnv, Policy]:
    key = repr(job.env) + "|" + repr(job.policy)
    if key not in _CACHE:
        if len(_CACHE) >= 4:  # bound memory: tasks are grouped, so old entries are done
            old_env, _ = _CACHE.pop(next(iter(_CACHE)))
            old_env.close()
        env = job.env.make()
        _CACHE[key] = (env, job.policy.build(env))
    return _CACHE[key]


def run_job(job: EpisodeJob) -> EpisodeMetrics:
    for mod in job.plugin_modules:
        importlib.import_module(mod)
    env, policy = _env_and_policy(job)
    if job.strategy is not None:
        wrap = get_strategy(job.strategy).wrap_policy
        if wrap is not None:
            policy = wrap(policy)
    cfg = job.execution
    if cfg.record_trace is False:
        raise ValueError("metrics need the per-step trace; keep record_trace=True")
    rollout = VirtualClockExecutor(env, policy, cfg, job.delay).run_episode(job.seed)
    return episode_metrics(rollout)


def _init_worker() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:  # one thread per worker: the parallelism is across processes
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def iter_jobs(
    jobs: Sequence[EpisodeJob], n_workers: int = 1, backend: str = "pool", ray: "RayConfig | None" = None
) -> Iterator[EpisodeMetrics]:
    """Yield results in job order; ``n_workers > 1`` runs them in a process pool.

    ``backend="ray"`` runs them as Ray tasks configured by ``ray`` (``n_workers`` unused:
    Ray's resources set the parallelism); the results are the same."""
    if backend == "ray":
        from chunkwise.eval.ray_backend import iter_jobs_ray

        yield from iter_jobs_ray(jobs, ray)
        return
    if backend != "pool":
        raise ValueError(f"unknown backend {backend!r}; valid: pool, ray")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if n_workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    with _context().Pool(processes=min(n_workers, len(jobs)), initializer=_init_worker) as pool:
        # chunksize 1 keeps the tqdm bar honest; ordered imap keeps results deterministic
        yield from pool.imap(run_job, jobs, chunksize=1)


def run_jobs(
    jobs: Sequence[EpisodeJob], n_workers: int = 1, desc: str = "episodes", backend: str = "pool",
    ray: "RayConfig | None" = None,
) -> list[EpisodeMetrics]:
    """``iter_jobs`` with a tqdm bar over completed episodes."""
    if backend == "ray":
        from chunkwise.eval.ray_backend import run_jobs_ray

        return run_jobs_ray(jobs, ray, desc=desc, progress=True)
    from tqdm import tqdm

    out: list[EpisodeMetrics] = []
    for res in tqdm(iter_jobs(jobs, n_workers), total=len(jobs), desc=desc, unit="ep", dynamic_ncols=True):
        out.append(res)
    return out


def episode_seeds(seed: int, n: int) -> list[int]:
    return [int(s) for s in np.arange(n) + int(seed)]
