"""Train a correction head: roll the base strategy out under delay, label with the expert.

    python -m chunkwise.eval.correction_train --env.task=push-v3 --strategy=latest_only \\
        --delays=1,2,4,8,12,16 --n_episodes=8 --dagger_iters=2 --output_dir=outputs/delay/corr_push

Why rollouts and not the prefix-branch datasets: a branch stores the forced (stale) prefix
and then the expert's own actions, so it never holds a *pair* (stale base action b_t,
expert action a*_t) at the same state s_t, which is what the residual r_t = a*_t - b_t
needs. Rolling the base strategy out at delay d on the virtual clock gives exactly the
states, stale actions, indices and ages the head sees at run time, and MetaWorld's
scripted expert labels any state (DAgger, Ross et al. 2011). Iteration k > 0 rolls out
with the head of iteration k - 1 in the loop, so the data follows the corrected policy's
own state distribution; rows from all iterations are kept.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chunkwise.common.cli import CLIError, parse_cli
from chunkwise.common.files import atomic_write_json
from chunkwise.envs.base import EnvConfig
from chunkwise.eval.rollouts import PolicySource
from chunkwise.policies.correction.head import (
    CLIP,
    STD_FLOOR,
    CorrectionConfig,
    CorrectionHead,
    base_input,
    correction_targets,
    features,
)
from chunkwise.scheduling.controller import StepContext
from chunkwise.types import OBS_STATE, Observation


def _default_env() -> EnvConfig:
    import chunkwise.envs  # noqa: F401 - registers the built-in env types

    return EnvConfig.get_choice_class("metaworld")(task="push-v3")


def _default_policy() -> PolicySource:
    return PolicySource(chunk_size=20)


@dataclass
class TrainCorrectionConfig:
    env: EnvConfig = field(default_factory=_default_env)
    policy: PolicySource = field(default_factory=_default_policy)  # eval's PolicySource: scripted oracle or --policy.path
    strategy: str = "latest_only"  # the base strategy whose stale actions are corrected
    delays: str = "1,2,4,8,12,16"  # comma-separated; every episode runs at each
    n_episodes: int = 8  # per delay and DAgger iteration
    seed: int = 5000  # disjoint from the evaluation seeds (1000 + i)
    dagger_iters: int = 2
    actions_per_chunk: int = 20
    chunk_size_threshold: float = 0.5
    hidden: str = "128,128"
    use_base: bool = True  # false: the ablation whose head never sees the base action
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    max_steps: int = 200  # cap per episode: a failing base would flood the data with one state
    output_dir: str = "outputs/delay/correction"

    def __post_init__(self) -> None:
        if not self.delay_list or any(d < 0 for d in self.delay_list):
            raise ValueError(f"delays must be non-negative integers, got {self.delays!r}")
        if self.n_episodes <= 0 or self.dagger_iters <= 0 or self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("n_episodes, dagger_iters, steps and batch_size must be positive")
        if "+" in self.strategy:
            raise ValueError(f"--strategy is the base strategy (no modifier), got {self.strategy!r}")

    @property
    def delay_list(self) -> list[int]:
        return [int(x) for x in str(self.delays).split(",") if x.strip()]


class Recorder:
    """A step hook that logs (features, expert residual) and optionally applies a head."""

    def __init__(self, env: Any, horizon: int, head: CorrectionHead | None = None, use_base: bool = True) -> None:
        self.env, self.horizon, self.head, self.use_base = env, horizon, head, use_base
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def __call__(self, obs: Observation, action: np.ndarray, ctx: StepContext) -> np.ndarray:
        state = obs[OBS_STATE]
        expert = self.env.expert_action(obs)
        b = base_input(action, self.use_base)
        self.x.append(features(state, b, ctx.index, ctx.age, self.horizon)[0])
        self.y.append(correction_targets(b, expert))
        if self.head is None:
            return action
        return self.head.correct(state, action, ctx.index, ctx.age)


class _Hooked:
    def __init__(self, inner: Any, hook: Recorder) -> None:
        self._inner, self.step_hook = inner, hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def collect(cfg: TrainCorrectionConfig, env: Any, policy: Any, head: CorrectionHead | None, it: int
            ) -> tuple[np.ndarray, np.ndarray, dict]:
    from chunkwise.eval.common import resolve_strategy
    from chunkwise.runtime.config import ExecutionConfig
    from chunkwise.runtime.strategies import get_strategy
    from chunkwise.runtime.virtual_clock import VirtualClockExecutor

    base = ExecutionConfig(actions_per_chunk=cfg.actions_per_chunk, chunk_size_threshold=cfg.chunk_size_threshold,
                           max_steps=cfg.max_steps)
    exe_cfg, name, _ = resolve_strategy(cfg.strategy, base)
    wrap = get_strategy(name).wrap_policy if name else None
    pol = wrap(policy) if wrap else policy
    rec = Recorder(env, cfg.actions_per_chunk, head, use_base=cfg.use_base)
    succ = {}
    for d in cfg.delay_list:
        ok = 0
        for i in range(cfg.n_episodes):
            seed = cfg.seed + 1000 * it + i
            r = VirtualClockExecutor(env, _Hooked(pol, rec), exe_cfg, d).run_episode(seed)
            ok += r.success
        succ[d] = ok / cfg.n_episodes
    return np.stack(rec.x), np.stack(rec.y), succ


def fit(x: np.ndarray, y: np.ndarray, cfg: TrainCorrectionConfig, ccfg: CorrectionConfig) -> tuple[CorrectionHead, float]:
    """MSE on standardised residuals, AdamW; returns the head and the last loss."""
    import torch

    torch.manual_seed(0)
    x_mean, x_std = x.mean(0), np.maximum(x.std(0), STD_FLOOR)
    y_mean, y_std = y.mean(0), np.maximum(y.std(0), 1e-3)
    xt = torch.from_numpy(np.clip((x - x_mean) / x_std, -CLIP, CLIP)).float()
    yt = torch.from_numpy((y - y_mean) / y_std).float()
    dims = [ccfg.in_dim, *ccfg.hidden, ccfg.action_dim]
    mods: list[torch.nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(0)
    loss = torch.tensor(0.0)
    for _ in range(cfg.steps):
        idx = torch.randint(0, xt.shape[0], (min(cfg.batch_size, xt.shape[0]),), generator=g)
        loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    w: dict[str, np.ndarray] = {}
    for i, m in enumerate(linears):
        w[f"w{i}"] = m.weight.detach().numpy().T.copy()
        w[f"b{i}"] = m.bias.detach().numpy().copy()
    w.update(x_mean=x_mean.astype(np.float32), x_std=x_std.astype(np.float32),
             y_mean=y_mean.astype(np.float32), y_std=y_std.astype(np.float32))
    return CorrectionHead(ccfg, w), float(loss.item())


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_cli(TrainCorrectionConfig, sys.argv[1:] if argv is None else argv,
                        "python -m chunkwise.eval.correction_train")
    except CLIError as e:
        print(e, file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    env = cfg.env.make()
    policy = cfg.policy.build(env)
    state_dim = int(np.asarray(env.reset(seed=0)[OBS_STATE]).shape[-1])
    ccfg = CorrectionConfig(state_dim=state_dim, action_dim=env.action_dim,
                            hidden=[int(h) for h in cfg.hidden.split(",")], horizon=cfg.actions_per_chunk,
                            use_base=cfg.use_base,
                            task=str(getattr(env, "task", "")), trained_on={k: v for k, v in asdict(cfg).items()
                                                                          if k not in ("env", "policy")})
    ccfg.trained_on["policy"] = {"type": cfg.policy.type, "path": cfg.policy.path, "chunk_size": cfg.policy.chunk_size}
    xs, ys, log = [], [], []
    head = None
    recomputed = False
    for it in range(cfg.dagger_iters):
        t0 = time.perf_counter()
        part = Path(cfg.output_dir + "_data") / f"iter{it}.npz"  # resumable: a finished iteration is reused
        # a part made with another config (e.g. fewer episodes) is recomputed, never silently
        # reused; iteration 0 rolls out without a head, so the fit's settings do not matter there,
        # and once one iteration is recomputed every later one is (its head changed)
        fit_keys = ("steps", "batch_size", "lr", "hidden") if it == 0 else ()
        made_by = json.dumps({k: v for k, v in ccfg.trained_on.items()
                              if k not in (*fit_keys, "output_dir", "dagger_iters")}, sort_keys=True)
        x = None
        if part.is_file() and not recomputed:
            with np.load(part) as z:
                if "made_by" in z and str(z["made_by"]) == made_by:
                    x, y, succ = z["x"], z["y"], json.loads(str(z["succ"]))
        if x is None:
            recomputed = True
            x, y, succ = collect(cfg, env, policy, head, it)
            part.parent.mkdir(parents=True, exist_ok=True)
            np.savez(part.with_suffix(".tmp.npz"), x=x, y=y, succ=json.dumps(succ), made_by=made_by)
            os.replace(part.with_suffix(".tmp.npz"), part)
        xs.append(x)
        ys.append(y)
        t1 = time.perf_counter()
        head, loss = fit(np.concatenate(xs), np.concatenate(ys), cfg, ccfg)
        t2 = time.perf_counter()
        entry = {"iter": it, "rows": int(sum(len(a) for a in xs)), "rollout_success_by_delay": succ,
                 "with_head": it > 0, "final_loss": loss, "collect_s": t1 - t0, "fit_s": t2 - t1}
        log.append(entry)
        print(json.dumps(entry), flush=True)
        head.save(cfg.output_dir)  # each iteration's head is usable at once
        atomic_write_json(f"{cfg.output_dir}/train_log.json", log)
    print(f"wrote {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
