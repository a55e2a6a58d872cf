"""Success rate of MetaWorld's scripted experts (what ``chunkwise collect`` records).

    python -m chunkwise.data.expert_eval --tasks='[reach-v3,push-v3]' --n_episodes=50 --seed=0

Episode k of a task uses env seed ``seed + k`` (the same seeds ``collect`` tries first), so
the table predicts how many attempts a collection needs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import draccus
import numpy as np

from chunkwise.data.collect import run_expert_episode
from chunkwise.envs import MetaWorldEnvConfig, make_env

DEFAULT_TASKS = ["reach-v3", "push-v3", "drawer-close-v3", "button-press-topdown-v3", "pick-place-v3"]


@dataclass
class ExpertEvalConfig:
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    n_episodes: int = 50
    seed: int = 0
    max_episode_steps: int = 500


def evaluate(cfg: ExpertEvalConfig) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for task in cfg.tasks:
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
    cfg = draccus.parse(ExpertEvalConfig, args=list(sys.argv[1:] if argv is None else argv))
    print(format_table(evaluate(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
