"""``chunkwise sweep``: success vs inference delay for many strategies and tasks.

    chunkwise sweep --tasks=push-v3,drawer-close-v3 --delays=0,1,2,4,8 \
        --strategies=sync,latest_only,weighted_average,average,conservative,temporal_ensemble \
        --n_episodes=50 --policy.type=scripted --policy.chunk_size=50 --output_dir=outputs/sweep

Strategy names: "sync" = sync mode; an aggregate name = async with that aggregate; any
other name registered with ``chunkwise.runtime.register_strategy`` (e.g. prefix-aware
"rtc_guided") works too. Every (task, strategy, delay) cell runs the same episode seeds
(seed, seed+1, ...), so cells are paired comparisons. Writes results.json (summaries and
per-episode metrics), results.csv, sweep.png and prints a table.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chunkwise.envs.base import EnvConfig
from chunkwise.eval.common import (
    CLIError,
    parse_cli,
    atomic_write_json,
    atomic_write_text,
    check_common,
    check_strategy_name,
    default_env,
    resolve_strategy,
)
from chunkwise.eval.metrics import summarize
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
    env: EnvConfig = field(default_factory=default_env)  # env.task is replaced by each of --tasks
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
    plot: bool = True

    def __post_init__(self) -> None:
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


def sweep(cfg: SweepConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Run every (task, strategy, delay) cell; rows in that order."""
    from chunkwise.eval.run import EvalConfig, check_checkpoint

    cells: list[tuple[str, str, int]] = []
    jobs: list[EpisodeJob] = []
    seeds = episode_seeds(cfg.seed, cfg.n_episodes)
    for task in cfg.task_list:
        env_cfg = replace(cfg.env, task=task)
        if cfg.policy.type == "checkpoint":
            check_checkpoint(EvalConfig(env=env_cfg, policy=cfg.policy, actions_per_chunk=cfg.actions_per_chunk,
                                        n_episodes=1))
        for strategy in cfg.strategy_list:
            execution, strat, plugins = resolve_strategy(strategy, cfg.base_execution())
            for d in cfg.delay_list:
                cells.append((task, strategy, d))
                jobs += [EpisodeJob(env_cfg, cfg.policy, execution, FixedDelay(d), s, strat, plugins) for s in seeds]
    if progress:
        results = run_jobs(jobs, cfg.n_workers, desc="sweep")
    else:
        from chunkwise.eval.rollouts import iter_jobs

        results = list(iter_jobs(jobs, cfg.n_workers))
    rows = []
    n = cfg.n_episodes
    for i, (task, strategy, d) in enumerate(cells):
        eps = results[i * n:(i + 1) * n]
        rows.append({"task": task, "strategy": strategy, "delay": d, "summary": summarize(eps),
                     "episodes": [e.to_dict() for e in eps]})
    return rows


def write_outputs(cfg: SweepConfig, rows: list[dict[str, Any]], seconds: float) -> Path:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(cfg)
    config["env"] = {"type": cfg.env.type, **asdict(cfg.env)}
    atomic_write_json(out / "results.json", {"config": config, "wall_seconds": seconds, "rows": rows})
    atomic_write_text(out / "results.csv", to_csv(rows))
    atomic_write_text(out / "table.md", format_table(rows))
    if cfg.plot:
        tmp = out / ".sweep.tmp.png"
        plot(rows, str(tmp))
        tmp.replace(out / "sweep.png")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_cli(SweepConfig, argv, "sweep")
    except CLIError:
        return 2
    t0 = time.perf_counter()
    try:
        rows = sweep(cfg)
    except (ValueError, FileNotFoundError) as e:  # checkpoint / env mismatch, found before episodes
        print(f"chunkwise sweep: error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    print(format_table(rows))
    out = write_outputs(cfg, rows, seconds)
    print(f"wrote {out}/results.json, results.csv, table.md" + (", sweep.png" if cfg.plot else "") + f" ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
