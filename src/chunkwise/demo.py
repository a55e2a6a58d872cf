"""``chunkwise demo``: the README's main job on the embedded default simulator.

    collect scripted demos ─► train a small ACT ─► sweep sync vs async strategies
    (MetaWorld push-v3)       (a few CPU minutes)   under inference delay ─► table + PNG

Each stage is the same command a user would run by hand (printed before it runs), so the
demo doubles as a worked example. Stages whose output already exists are reused, so a
second ``make demo`` only re-evaluates.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path



@dataclass
class DemoConfig:
    output_dir: str = "outputs/demo"
    task: str = "push-v3"
    n_demos: int = 50
    chunk_size: int = 20
    train_steps: int = 2000
    batch_size: int = 64
    n_episodes: int = 20
    delays: str = "0,2,4,8"
    strategies: str = "sync,latest_only,weighted_average,temporal_ensemble"
    n_action_steps: int = 10  # sync executes this many actions per chunk
    n_workers: int = 2
    seed: int = 0  # demos use seeds seed.., evaluation seeds eval_seed.. (disjoint)
    eval_seed: int = 1000
    # Skip a stage when its output exists (collect, train); the sweep always reruns.
    reuse: bool = True

    def __post_init__(self) -> None:
        if self.n_demos <= 0 or self.n_episodes <= 0 or self.train_steps <= 0:
            raise ValueError("n_demos, n_episodes and train_steps must be positive")


def _run(title: str, module: str, args: list[str]) -> float:
    import importlib

    print(f"\n=== {title}\n$ chunkwise {module.rsplit('.', 1)[-1]} {shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    rc = importlib.import_module(module).main(args)
    if rc:
        raise SystemExit(f"demo stage '{title}' failed with exit code {rc}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(DemoConfig, argv, "demo")
    except CLIError:
        return 2
    out = Path(cfg.output_dir)
    data_dir, ckpt_dir, sweep_dir = out / "data" / cfg.task, out / "train", out / "sweep"
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    if cfg.reuse and (data_dir / "meta" / "info.json").is_file():
        print(f"=== reusing demonstrations in {data_dir}")
    else:
        timings["collect"] = _run(
            "1/3 collect scripted demonstrations",
            "chunkwise.data.collect",
            [
                "--env.type=metaworld",
                f"--env.task={cfg.task}",
                f"--n_episodes={cfg.n_demos}",
                f"--seed={cfg.seed}",
                f"--output_dir={data_dir}",
                "--overwrite=true",
            ],
        )

    ckpt = ckpt_dir / "checkpoints" / "last"
    if cfg.reuse and (ckpt / "config.json").is_file():
        print(f"=== reusing checkpoint {ckpt}")
    else:
        # An interrupted earlier run left checkpoints: continue it rather than refuse.
        resume = (ckpt_dir / "checkpoints").is_dir() and any((ckpt_dir / "checkpoints").glob("step_*"))
        timings["train"] = _run(
            "2/3 train a small ACT policy",
            "chunkwise.training.train",
            [
                "--policy.type=act",
                f"--policy.chunk_size={cfg.chunk_size}",
                f"--policy.n_action_steps={cfg.n_action_steps}",
                f"--dataset.root={data_dir}",
                f"--steps={cfg.train_steps}",
                f"--batch_size={cfg.batch_size}",
                f"--seed={cfg.seed}",
                f"--output_dir={ckpt_dir}",
                f"--resume={str(resume).lower()}",
            ],
        )

    timings["sweep"] = _run(
        "3/3 evaluate sync vs async under inference delay",
        "chunkwise.eval.sweep",
        [
            f"--policy.path={ckpt}",
            "--env.type=metaworld",
            f"--tasks={cfg.task}",
            f"--delays={cfg.delays}",
            f"--strategies={cfg.strategies}",
            f"--n_episodes={cfg.n_episodes}",
            f"--actions_per_chunk={cfg.chunk_size}",
            f"--n_action_steps={cfg.n_action_steps}",
            f"--n_workers={cfg.n_workers}",
            f"--seed={cfg.eval_seed}",
            f"--output_dir={sweep_dir}",
            "--overwrite=true",
        ],
    )
    total = time.perf_counter() - t_start
    print("\n=== demo finished in {:.1f} min ({})".format(
        total / 60, ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())))
    print(f"results: {sweep_dir}/table.md, results.csv; plot: {sweep_dir}/sweep.png")
    return 0
