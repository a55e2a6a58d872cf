"""``chunkwise sweep``: success vs inference delay for many strategies and tasks.

    chunkwise sweep --tasks=push-v3,drawer-close-v3 --delays=0,1,2,4,8 \
        --strategies=sync,latest_only,weighted_average,average,conservative,temporal_ensemble \
        --n_episodes=50 --policy.type=scripted --policy.chunk_size=50 --output_dir=outputs/sweep

Strategy names: "sync" = sync mode; an aggregate name = async with that aggregate; any
other name registered with ``chunkwise.runtime.register_strategy`` (e.g. prefix-aware
"rtc_guided") works too. Every (task, strategy, delay) cell runs the same episode seeds
(seed, seed+1, ...), so cells are paired comparisons. Every cell is checked against the
policy before the first episode runs (policy vs each task's env, each strategy's policy
wrapper), so an impossible cell fails the sweep at once instead of after hours. Writes
results.json (summaries and per-episode metrics), results.csv, table.md, sweep.png and
prints the tables (success with its Wilson 95% interval in the second). Progress bars go
to stderr when it is a terminal (``--progress=true|false`` overrides).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chunkwise.envs.base import EnvConfig
from chunkwise.policies.correction.source import CorrectionSource
from chunkwise.common.files import prepare_output_dir
from chunkwise.eval.common import (
    CLIError,
    parse_cli,
    atomic_write_json,
    atomic_write_text,
    check_common,
    check_strategy_name,
    default_env,
    execution_note,
    resolve_strategy,
)
from chunkwise.eval.metrics import summarize
from chunkwise.eval.ray_backend import RayConfig, check_backend
from chunkwise.eval.report import format_table, plot, to_csv
from chunkwise.eval.rollouts import EpisodeJob, PolicySource, episode_seeds, run_jobs
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.scheduling.delay import FixedDelay

DEFAULT_STRATEGIES = "sync,latest_only,weighted_average,average,conservative,temporal_ensemble"


def _split(text: str, what: str) -> list[str]:
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    if len(set(items)) != len(items):
        raise ValueError(f"--{what} has duplicates: {items}")
    return items


@dataclass
class SweepConfig:
    env: EnvConfig = field(default_factory=default_env)  # env.task is ignored: each of --tasks is run
    policy: PolicySource = field(default_factory=PolicySource)
    tasks: str = "push-v3"  # comma-separated
    delays: str = "0,1,2,4,8"  # comma-separated control steps
    strategies: str = DEFAULT_STRATEGIES  # comma-separated
    n_episodes: int = 50
    seed: int = 0
    aggregate_fn_name: str = "weighted_average"  # used by strategy "async"
    actions_per_chunk: int = 50
    chunk_size_threshold: float = 0.5
    n_action_steps: int | None = None
    temporal_ensemble_m: float = 0.01
    n_workers: int = 2
    output_dir: str = "outputs/sweep"
    overwrite: bool = False  # replace the results already in --output_dir
    plot: bool = True
    progress: bool | None = None  # tqdm bar on stderr; default: only when stderr is a terminal
    backend: str = "pool"  # "pool": processes on this machine (n_workers); "ray": Ray tasks (--ray.*, docs/scale.md)
    ray: RayConfig = field(default_factory=RayConfig)
    correction: CorrectionSource = field(default_factory=CorrectionSource)  # head for <base>+correction

    def __post_init__(self) -> None:
        check_backend(self.backend)
        self.task_list = _split(self.tasks, "tasks")
        try:
            self.delay_list = [int(d) for d in _split(self.delays, "delays")]
        except ValueError as e:
            if "duplicates" in str(e) or "empty" in str(e):
                raise
            raise ValueError(f"--delays must be comma-separated integers, got {self.delays!r}") from None
        self.strategy_list = _split(self.strategies, "strategies")
        for s in self.strategy_list:
            check_strategy_name(s)
        self.correction.check_used(self.strategy_list)
        check_common(
            chunk_size_threshold=self.chunk_size_threshold, actions_per_chunk=self.actions_per_chunk,
            n_episodes=self.n_episodes, n_workers=self.n_workers,
            chunk_size=self.policy.chunk_size if self.policy.type == "scripted" else None,
            aggregate_fn_name=self.aggregate_fn_name, delays=self.delay_list,
        )
        for t in self.task_list:  # validate task names before any env exists
            replace(self.env, task=t)
        self.base_execution()

    def base_execution(self) -> ExecutionConfig:
        return ExecutionConfig(
            strategy="async", aggregate_fn_name=self.aggregate_fn_name, actions_per_chunk=self.actions_per_chunk,
            chunk_size_threshold=self.chunk_size_threshold, n_action_steps=self.n_action_steps,
            temporal_ensemble_m=self.temporal_ensemble_m, max_steps=self.env.max_episode_steps,
        )


def _one_line(err: BaseException) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def check_cells(cfg: SweepConfig) -> None:
    """Fail (ValueError) before any episode if some (task, strategy) cell cannot run.

    Cheap: the policy is built once (a checkpoint is loaded once and checked against each
    task's env; the scripted oracle is built on the first task) and every strategy's
    ``wrap_policy`` is tried on it, which is where a strategy rejects a policy (e.g.
    ``oracle_prefix`` needs the scripted oracle, ``rtc_trained`` a checkpoint trained for it).
    """
    from chunkwise.eval.rollouts import check_policy_matches_env, task_mismatch

    if cfg.policy.type != "scripted":
        from chunkwise.policies import load

        path = cfg.policy.path or ""
        cfg.policy.check_type()
        policy = load(path)
        if cfg.actions_per_chunk > policy.metadata.chunk_size:
            raise ValueError(
                f"actions_per_chunk={cfg.actions_per_chunk} > chunk_size={policy.metadata.chunk_size} of {path}"
            )
        for task in cfg.task_list:
            env = replace(cfg.env, task=task).make()
            try:
                check_policy_matches_env(policy, env, path)
                warn = task_mismatch(policy, env, path)
                if warn:
                    print(f"chunkwise sweep: {warn}", file=sys.stderr)
            finally:
                env.close()
        _check_wrappers(cfg, policy, f"--policy.path={path}")
    else:  # the oracle is built per task in the workers; one is enough to try the wrappers
        env = replace(cfg.env, task=cfg.task_list[0]).make()
        try:
            _check_wrappers(cfg, cfg.policy.build(env), "--policy.type=scripted")
        finally:
            env.close()


def _check_wrappers(cfg: SweepConfig, policy: Any, what: str) -> None:
    from chunkwise.runtime.strategies import get_strategy

    for name in cfg.strategy_list:
        _, registry_name, _ = resolve_strategy(name, cfg.base_execution())
        wrap = get_strategy(registry_name).wrap_policy if registry_name is not None else None
        if wrap is None:
            continue
        try:
            wrap(policy)
        except (TypeError, ValueError) as e:
            raise ValueError(f"strategy {name!r} cannot run with {what}: {_one_line(e)} "
                             "(checked before running any cell)") from None


def sweep(cfg: SweepConfig, progress: bool | None = None, check: bool = True) -> list[dict[str, Any]]:
    """Run every (task, strategy, delay) cell; rows in that order.

    ``check`` first validates every cell (``check_cells``); ``progress`` None means
    ``cfg.progress``, itself None meaning "when stderr is a terminal".
    """
    if check:
        check_cells(cfg)
    if progress is None:
        progress = show_progress(cfg)
    cells: list[tuple[str, str, int]] = []
    jobs: list[EpisodeJob] = []
    notes: set[str] = set()
    seeds = episode_seeds(cfg.seed, cfg.n_episodes)
    for task in cfg.task_list:
        env_cfg = replace(cfg.env, task=task)
        for strategy in cfg.strategy_list:
            execution, strat, plugins = resolve_strategy(strategy, cfg.base_execution())
            for d in cfg.delay_list:
                note = execution_note(execution, d)
                if note and note not in notes:
                    notes.add(note)
                    print(f"chunkwise sweep: note: {note}", file=sys.stderr)
                cells.append((task, strategy, d))
                jobs += [EpisodeJob(env_cfg, cfg.policy, execution, FixedDelay(d), s, strat, plugins) for s in seeds]
    if progress:
        results = run_jobs(jobs, cfg.n_workers, desc="sweep", backend=cfg.backend, ray=cfg.ray)
    else:
        from chunkwise.eval.rollouts import iter_jobs

        results = list(iter_jobs(jobs, cfg.n_workers, backend=cfg.backend, ray=cfg.ray))
    rows = []
    n = cfg.n_episodes
    for i, (task, strategy, d) in enumerate(cells):
        eps = results[i * n:(i + 1) * n]
        rows.append({"task": task, "strategy": strategy, "delay": d, "summary": summarize(eps),
                     "episodes": [e.to_dict() for e in eps]})
    return rows


def show_progress(cfg: SweepConfig) -> bool:
    if cfg.progress is not None:
        return cfg.progress
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def config_dict(cfg: SweepConfig) -> dict[str, Any]:
    """The config block of results.json: the tasks, delays and strategies actually run.

    ``env`` is the env config every cell used except for its task, so ``env.task`` lists
    the tasks (one env per task), like ``tasks``; ``--env.task`` is not used by a sweep.
    """
    config = asdict(cfg)
    config["tasks"] = list(cfg.task_list)
    config["delays"] = list(cfg.delay_list)
    config["strategies"] = list(cfg.strategy_list)
    config["env"] = {"type": cfg.env.type, **asdict(cfg.env), "task": list(cfg.task_list)}
    return config


def write_outputs(cfg: SweepConfig, rows: list[dict[str, Any]], seconds: float) -> Path:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", {"config": config_dict(cfg), "wall_seconds": seconds, "rows": rows})
    atomic_write_text(out / "results.csv", to_csv(rows))
    atomic_write_text(out / "table.md", format_table(rows, ci=True))
    if cfg.plot:
        tmp = out / ".sweep.tmp.png"
        plot(rows, str(tmp))
        tmp.replace(out / "sweep.png")
    return out


def _resolved_config(cfg: SweepConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["env"] = {"type": cfg.env.type, **asdict(cfg.env), "task": cfg.task_list}
    d.update(tasks=cfg.task_list, delays=cfg.delay_list, strategies=cfg.strategy_list)
    return d


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_cli(SweepConfig, argv, "sweep")
    except CLIError:
        return 2
    cfg.correction.export()  # strategies <base>+correction (and sweep workers) load it
    t0 = time.perf_counter()
    try:
        check_cells(cfg)  # every cell, before the first episode
    except (ValueError, FileNotFoundError) as e:  # checkpoint / env / strategy mismatch
        print(f"chunkwise sweep: error: {e}", file=sys.stderr)
        return 2
    try:
        out_dir = prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite, resume=None)
    except (ValueError, FileExistsError) as e:
        print(f"chunkwise sweep: error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(out_dir / "config.json", _resolved_config(cfg))
    rows = sweep(cfg, check=False)
    seconds = time.perf_counter() - t0
    print(format_table(rows, ci=True))
    out = write_outputs(cfg, rows, seconds)
    print(f"wrote {out}/results.json, results.csv, table.md" + (", sweep.png" if cfg.plot else "") + f" ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
