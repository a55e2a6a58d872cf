"""The behaviour-cloning loop: sample, loss, AdamW step, log, evaluate, checkpoint.

Determinism (what makes ``--resume`` exact): at step k (1-based)

    indices_k = default_rng([seed, k]).integers(0, len(dataset), batch_size)
    torch.manual_seed(f(seed, k))     # dropout and the CVAE noise
    lr_k      = lr * min(1, k / warmup) * cosine(k)   (a pure function of k)

so the batch, the noise and the learning rate depend only on (seed, k), and the rest of
the state (weights, AdamW moments) is in the checkpoint.

    lr schedule:  lr_k = lr * k / W                              for k <= W (warmup)
                  lr_k = lr * (r + (1 - r) * (1 + cos(pi * p)) / 2)   p = (k - W) / (steps - W)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from chunkwise.policies.common.config import PolicyConfig
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.training.checkpoints import load_train_state, save_training_checkpoint
from chunkwise.types import ACTION, OBS_IMAGE_PREFIX, OBS_STATE, TASK, FeatureSpec

REQUIRED_KEYS = (ACTION, "action_is_pad")


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the gradient became NaN/inf."""


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float) -> float:
    if warmup > 0 and step <= warmup:
        return base_lr * step / warmup
    span = max(total - warmup, 1)
    p = min(max(step - warmup, 0) / span, 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).integers(0, n, size=batch_size)


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, 7]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def dataset_info(dataset: Any, root: str = "", use_images: bool | None = None) -> DatasetInfo:
    """Shapes, stats and fps of a ChunkDataset; a missing required key is named in the error."""
    if len(dataset) == 0:
        raise ValueError(f"dataset {root} is empty")
    sample = dataset[0]
    for key in REQUIRED_KEYS:
        if key not in sample:
            raise KeyError(f"dataset {root} lacks {key!r}, which BC training needs (has {sorted(sample)})")
    spec: dict[str, FeatureSpec] = {}
    for key, value in sample.items():
        if key == OBS_STATE or key.startswith(OBS_IMAGE_PREFIX):
            arr = np.asarray(value)
            spec[key] = FeatureSpec(tuple(arr.shape), "uint8" if key.startswith(OBS_IMAGE_PREFIX) else "float32")
    if use_images is False and OBS_STATE not in spec:
        raise KeyError(f"dataset {root} lacks {OBS_STATE!r} and the policy does not use images (use_images=false)")
    stats = {k: {s: np.asarray(v, dtype=np.float32) for s, v in d.items()} for k, d in dataset.stats.items()}
    for key in [ACTION] + ([OBS_STATE] if OBS_STATE in spec else []):
        if key not in stats:
            raise KeyError(f"dataset {root} has no normalization stats for {key!r} (stats has {sorted(stats)})")
    task = sample.get(TASK, "")
    return DatasetInfo(
        observation_spec=spec,
        action_dim=int(np.asarray(sample[ACTION]).shape[-1]),
        fps=float(dataset.fps),
        stats=stats,
        task=str(task),
    )


def to_tensors(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Numeric columns -> tensors; ``task`` stays a list of strings (one per example) so
    task-conditioned policies train on each example's own task (multi-task datasets)."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == TASK:
            out[key] = [value] * len(next(iter(batch.values()))) if isinstance(value, str) else list(value)
            continue
        if isinstance(value, (str, list)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "fiub":
            out[key] = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32) if arr.dtype.kind == "f" else arr))
    return out


@dataclass
class TrainerOptions:
    steps: int
    batch_size: int
    seed: int = 0
    log_every: int = 100
    save_every: int = 1000
    eval_every: int = 0
    keep_last: int = 3
    progress: bool = True


class Trainer:
    """Owns the optimizer and the loop; the policy owns its loss (``compute_loss``)."""

    def __init__(
        self,
        policy: Any,
        policy_config: PolicyConfig,
        dataset: Any,
        output_dir: Path,
        options: TrainerOptions,
        evaluate: Callable[[Any], dict[str, float]] | None = None,
        extra_state: dict[str, Any] | None = None,
        tensorboard: Any = None,
    ) -> None:
        self.policy, self.cfg, self.dataset = policy, policy_config, dataset
        self.output_dir = Path(output_dir)
        self.opt = options
        self.evaluate = evaluate
        self.extra_state = extra_state or {}
        self.tb = tensorboard
        self.optimizer = torch.optim.AdamW(
            [p for p in policy.parameters() if p.requires_grad], lr=policy_config.lr, weight_decay=policy_config.weight_decay
        )
        self.step = 0
        self.metrics_path = self.output_dir / "metrics.jsonl"

    def resume_from(self, ckpt: Path) -> None:
        state = load_train_state(ckpt, self.optimizer)
        self.step = int(state["step"])
        if state.get("seed", self.opt.seed) != self.opt.seed:
            raise ValueError(f"cannot resume {ckpt}: it was trained with seed {state['seed']}, not {self.opt.seed}")
        self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines written after the checkpoint, so the log reads like one run."""
        if not self.metrics_path.is_file():
            return
        keep = [ln for ln in self.metrics_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        self.metrics_path.write_text("".join(ln + "\n" for ln in keep))

    def _log(self, record: dict[str, Any]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def save(self) -> Path:
        return save_training_checkpoint(
            self.output_dir,
            self.step,
            self.policy,
            self.optimizer,
            {**self.extra_state, "seed": self.opt.seed},
            keep_last=self.opt.keep_last,
        )

    def train_step(self, step: int) -> dict[str, float]:
        idx = batch_indices(self.opt.seed, step, len(self.dataset), self.opt.batch_size)
        batch = to_tensors(self.dataset.get_batch(idx))
        torch.manual_seed(step_seed(self.opt.seed, step))
        lr = lr_at(step, self.cfg.lr, self.cfg.warmup_steps, self.opt.steps, self.cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.policy.train()
        loss, terms = self.policy.compute_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss became {float(loss.detach())} at step {step} (terms {terms})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip_norm)
        if not torch.isfinite(grad_norm):
            raise NonFiniteLossError(f"gradient norm became {float(grad_norm)} at step {step} (terms {terms})")
        self.optimizer.step()
        return {**terms, "lr": lr, "grad_norm": float(grad_norm)}

    def run(self) -> dict[str, Any]:
        """Train from ``self.step`` to ``options.steps``; returns the last logged record."""
        last: dict[str, Any] = {}
        window: list[dict[str, float]] = []
        t_window = time.perf_counter()
        t_start = time.perf_counter()
        start_step = self.step
        eval_seconds = 0.0
        bar = tqdm(
            range(self.step + 1, self.opt.steps + 1),
            initial=self.step,
            total=self.opt.steps,
            desc="train",
            disable=not self.opt.progress,
            dynamic_ncols=True,
        )
        try:
            for step in bar:
                terms = self.train_step(step)
                self.step = step
                window.append(terms)
                if step % self.opt.log_every == 0 or step == self.opt.steps:
                    now = time.perf_counter()
                    record: dict[str, Any] = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    record.update(
                        step=step,
                        samples_per_s=len(window) * self.opt.batch_size / max(now - t_window, 1e-9),
                        elapsed_s=now - t_start,
                    )
                    window, t_window = [], now
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                    self._log(record)
                    last = record
                if self.evaluate is not None and self.opt.eval_every > 0 and (
                    step % self.opt.eval_every == 0 or step == self.opt.steps
                ):
                    t_eval = time.perf_counter()
                    ev = self.evaluate(self.policy)
                    eval_seconds += time.perf_counter() - t_eval
                    self._log({"step": step, **ev})
                    bar.write(f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in ev.items()))
                    last = {**last, **ev}
                    t_window = time.perf_counter()  # keep samples/s about training only
                if step % self.opt.save_every == 0 or step == self.opt.steps:
                    self.save()
        finally:
            bar.close()
        last["eval_seconds"] = eval_seconds
        last["train_seconds"] = time.perf_counter() - t_start - eval_seconds  # incl. checkpointing
        last["steps_this_run"] = self.step - start_step
        return last
