"""``chunkwise train``: behaviour cloning of a chunk policy on a LeRobot v3 dataset.

    chunkwise train --policy.type=act --dataset.root=data/push --steps=20000 --batch_size=64 \
        --output_dir=outputs/act_push [--eval_every=5000 --eval_episodes=20 \
        --env.type=metaworld --env.task=push-v3] [--resume=true] [--tensorboard=true]

Writes ``<output_dir>/metrics.jsonl`` (one JSON record per ``log_every`` steps: loss terms,
lr, grad_norm, samples/s; plus ``eval/*`` records), ``<output_dir>/checkpoints/step_*/`` and
``<output_dir>/checkpoints/last`` (a loadable policy: ``--policy.path=<output_dir>/checkpoints/last``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import draccus
import torch

import chunkwise.envs  # noqa: F401 - registers --env.type choices (metaworld, ...)
from chunkwise.envs.base import EnvConfig
from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.common.checkpoint import CONFIG_FILE, write_json_atomic
from chunkwise.policies.common.config import PolicyConfig
from chunkwise.policies.registry import import_config_modules
from chunkwise.training.checkpoints import last_checkpoint
from chunkwise.training.trainer import NonFiniteLossError, Trainer, TrainerOptions, dataset_info

log = logging.getLogger("chunkwise.train")

# Every trainable family's config registers its ``--policy.type`` (policies/registry.py).
import_config_modules()


@dataclass
class DatasetConfig:
    root: str = ""  # a LeRobot v3 dataset directory (what `chunkwise collect` writes)


@dataclass
class TrainConfig:
    policy: PolicyConfig = field(default_factory=ACTConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    env: EnvConfig | None = None  # for evaluation during training (--env.type=metaworld --env.task=...)
    output_dir: str = "outputs/train"
    steps: int = 10000
    batch_size: int = 64
    seed: int = 0
    log_every: int = 100
    save_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0  # 0: no evaluation during training
    eval_episodes: int = 10
    resume: bool = False
    tensorboard: bool = False
    # 1 by default: with more threads than free cores, torch's OpenMP barriers stall (measured
    # 5.8 samples/s with 2 threads vs 40 with 1 on a 2-core machine at load 11).
    num_threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.dataset.root:
            raise ValueError("--dataset.root is required (a LeRobot v3 dataset directory)")
        for name in ("steps", "batch_size", "log_every", "save_every", "num_threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_episodes <= 0:
            raise ValueError(f"--eval_every must be >= 0 and --eval_episodes > 0, got {self.eval_every}, {self.eval_episodes}")
        if self.eval_every > 0 and self.env is None:
            raise ValueError("--eval_every > 0 needs an environment: add --env.type=metaworld --env.task=<task>")


def _open_dataset(root: str, chunk_size: int, use_images: bool) -> Any:
    from chunkwise.data.dataset import ChunkDataset

    if not Path(root).exists():
        raise FileNotFoundError(f"--dataset.root={root} does not exist")
    # A state-only policy never pays for decoding the PNG frames.
    return ChunkDataset(root, chunk_size=chunk_size, image_keys=use_images)


def _make_tensorboard(enabled: bool, output_dir: Path) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("--tensorboard=true but the tensorboard package is not installed; logging JSONL only")
        return None
    return SummaryWriter(str(output_dir / "tensorboard"))


def _load_policy_for_resume(ckpt: Path) -> tuple[Any, PolicyConfig]:
    from chunkwise.policies.registry import load

    policy = load(ckpt)
    cfg = json.loads((ckpt / CONFIG_FILE).read_text())
    return policy, PolicyConfig.from_dict(cfg["type"], cfg["config"])


@contextlib.contextmanager
def _cpu_training_settings(num_threads: int) -> Iterator[None]:
    """Thread count and flush-to-zero for training, restored afterwards.

    Flush-to-zero is process-global CPU state: left on, it breaks code that needs subnormal
    floats (hypothesis refuses to generate floats at all), so a library call must undo it.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    torch.set_flush_denormal(True)  # denormal floats are ~100x slower on CPU
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous_threads)


def run_training(cfg: TrainConfig, dataset: Any = None) -> dict[str, Any]:
    """Train as configured; ``dataset`` overrides ``--dataset.root`` (tests, notebooks)."""
    with _cpu_training_settings(cfg.num_threads):
        return _run_training(cfg, dataset)


def _run_training(cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    ckpt = last_checkpoint(out)
    if ckpt is not None and not cfg.resume:
        raise FileExistsError(
            f"{out} already has checkpoints ({ckpt.name}); pass --resume=true to continue or pick another --output_dir"
        )
    use_images = getattr(cfg.policy, "use_images", None)
    if dataset is None:
        dataset = _open_dataset(cfg.dataset.root, cfg.policy.chunk_size, bool(use_images))
    info = dataset_info(dataset, cfg.dataset.root, use_images)

    if cfg.resume and ckpt is not None:
        policy, policy_cfg = _load_policy_for_resume(ckpt)
        if policy_cfg != cfg.policy:
            log.warning("resuming with the checkpoint's policy config; command-line --policy.* flags are ignored")
    else:
        torch.manual_seed(cfg.seed)
        policy_cfg = cfg.policy
        policy = policy_cfg.make_policy(info)
    n_params = sum(p.numel() for p in policy.parameters())

    if cfg.env is not None:  # fail now, not at the first evaluation minutes from now
        from chunkwise.policies.common.compat import check_compatible

        env = cfg.env.make()
        try:
            check_compatible(policy.metadata, env)
        finally:
            env.close()
    evaluate = None
    if cfg.env is not None and cfg.eval_every > 0:
        from chunkwise.training.rollout import evaluate_sync

        env_cfg = cfg.env

        def evaluate(p: Any) -> dict[str, float]:
            return evaluate_sync(p, env_cfg, cfg.eval_episodes, policy_cfg.n_action_steps).as_metrics()

    options = TrainerOptions(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        log_every=cfg.log_every,
        save_every=cfg.save_every,
        eval_every=cfg.eval_every,
        keep_last=cfg.keep_last,
        progress=cfg.progress,
    )
    extra = {"train_config": draccus.encode(cfg), "dataset_root": str(cfg.dataset.root), "n_params": n_params}
    trainer = Trainer(policy, policy_cfg, dataset, out, options, evaluate, extra, _make_tensorboard(cfg.tensorboard, out))
    if cfg.resume and ckpt is not None:
        trainer.resume_from(ckpt)
        log.info("resumed from %s at step %d", ckpt, trainer.step)
    if trainer.step >= cfg.steps:
        return {"step": trainer.step, "note": "already trained to --steps"}
    t0 = time.perf_counter()
    result = trainer.run()
    summary = {
        **result,
        "n_params": n_params,
        "n_samples": len(dataset),
        "wall_seconds": time.perf_counter() - t0,
        "checkpoint": str(out / "checkpoints" / "last"),
    }
    write_json_atomic(out / "train_summary.json", summary)
    return summary


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(TrainConfig, argv, "train")
    except CLIError:
        return 2
    try:
        summary = run_training(cfg)
    except NonFiniteLossError as err:
        print(f"chunkwise train: stopped: {err}. The last good checkpoint is kept in {cfg.output_dir}/checkpoints/last.", file=sys.stderr)
        return 1
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as err:  # incl. IncompatiblePolicyError
        print(f"chunkwise train: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
