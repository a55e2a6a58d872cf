"""Success rate of MetaWorld's scripted experts (what ``chunkwise collect`` records).

    python -m chunkwise.data.expert_eval --tasks=reach-v3,push-v3 --n_episodes=50 --seed=0

Episode k of a task uses env seed ``seed + k`` (the same seeds ``collect`` tries first), so
the table predicts how many attempts a collection needs. ``--tasks`` is comma-separated,
as in ``chunkwise sweep`` (the YAML list form ``--tasks='[a,b]'`` still works).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from chunkwise.data.collect import run_expert_episode
from chunkwise.envs import MetaWorldEnvConfig, make_env

DEFAULT_TASKS = ["reach-v3", "push-v3", "drawer-close-v3", "button-press-topdown-v3", "pick-place-v3"]


def split_tasks(tasks: str | list[str] | tuple[str, ...]) -> list[str]:
    """'a,b' (or '[a, b]', or a list from Python) -> ['a', 'b']; empty or duplicates: ValueError."""
    if isinstance(tasks, str):
        text = tasks.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items = [t.strip().strip("'\"") for t in text.split(",")]
    else:
        items = [str(t).strip() for t in tasks]
    items = [t for t in items if t]
    if not items:
        raise ValueError("--tasks is empty")
    if len(set(items)) != len(items):
        raise ValueError(f"--tasks has duplicates: {items}")
    return items


@dataclass
class ExpertEvalConfig:
    """Run each task's scripted expert for n_episodes and print a success table."""

    tasks: str = ",".join(DEFAULT_TASKS)  # comma-separated MetaWorld v3 task names
    n_episodes: int = 50  # episodes per task; episode k uses env seed seed + k
    seed: int = 0  # seed of the first episode (collect tries the same seeds)
    max_episode_steps: int = 500  # an episode that has not succeeded by then counts as failed

    def __post_init__(self) -> None:
        self.task_list = split_tasks(self.tasks)
        for task in self.task_list:  # clear error for a misspelt task before any env exists
            MetaWorldEnvConfig(task=task, max_episode_steps=self.max_episode_steps)
        if self.n_episodes <= 0:
            raise ValueError(f"n_episodes must be positive, got {self.n_episodes}")


def evaluate(cfg: ExpertEvalConfig) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for task in cfg.task_list:
        env_cfg = MetaWorldEnvConfig(task=task, max_episode_steps=cfg.max_episode_steps)
        lengths, ok = [], []
        t0 = time.perf_counter()
        with make_env(env_cfg) as env:
            for k in tqdm(range(cfg.n_episodes), desc=task, unit="ep", file=sys.stderr, leave=False):
                frames, success = run_expert_episode(env, cfg.seed + k)
                ok.append(success)
                lengths.append(len(frames["action"]))
        lengths_ok = [n for n, s in zip(lengths, ok) if s]
        rows.append({
            "task": task,
            "episodes": cfg.n_episodes,
            "successes": int(sum(ok)),
            "rate": float(np.mean(ok)),
            "mean_steps_to_success": float(np.mean(lengths_ok)) if lengths_ok else float("nan"),
            "seconds": time.perf_counter() - t0,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| task | episodes | successes | success rate | mean steps to success | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['episodes']} | {r['successes']} | {r['rate']:.0%} | "
                     f"{r['mean_steps_to_success']:.1f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(ExpertEvalConfig, sys.argv[1:] if argv is None else argv, 'python -m chunkwise.data.expert_eval')
    except CLIError:
        return 2
    print(format_table(evaluate(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
