"""``chunkwise rl``: SAC over action chunks with online rollouts in MetaWorld.

    chunkwise rl --env.type=metaworld --env.task=reach-v3 --actor=act --critic=chunk \
        --init.path=outputs/bc_act --demos.root=outputs/demos_reach --online_steps=20000 \
        --chunk_size=5 --seed=0 --output_dir=outputs/rl_reach

Loop (env steps counted in control steps)::

    [init: BC checkpoint mapping and/or K BC warm-start steps]  -> eval @ 0
    repeat until online_steps:
        one episode, open-loop chunks (sync executor, stochastic actor) -> online replay
        updates: floor(utd_ratio * env_steps) - updates_done, batches mix demos/online
        every eval_every steps: deterministic eval on fixed seeds -> metrics.jsonl + PNG
        every save_every steps: checkpoint (atomic) -> --resume continues from it

Updates run after each episode rather than after each chunk: the actor used for an
episode is fixed, and the update count still follows the update-to-data ratio.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from chunkwise.envs import EnvConfig, MetaWorldEnvConfig, make_env
from chunkwise.common.ray import RayConfig
from chunkwise.rl.checkpoint import (
    CHECKPOINTS,
    has_checkpoint,
    load_checkpoint,
    point_best,
    replay_tensors,
    restore_replay,
    save_json,
    write_checkpoint,
)
from chunkwise.rl.config import RewardType, SACConfig, _check_choice, _check_positive
from chunkwise.rl.delayed import make_runner
from chunkwise.rl.demos import load_dataset_episodes, scripted_episodes
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.policy import rl_metadata
from chunkwise.rl.replay import EpisodeReplay, MixedReplay
from chunkwise.types import OBS_STATE

EVAL_SEED_BASE = 1_000_000  # eval episodes never share seeds with training episodes


@dataclass
class InitConfig:
    path: str = ""  # BC checkpoint dir (``chunkwise train`` output, type act); empty = random init
    # actor=act: take dim_model/n_heads/dim_feedforward/n_decoder_layers from the BC checkpoint
    # so its decoder can be mapped (overrides --actor_net.* for those four fields)
    adopt_sizes: bool = True
    bc_warmstart_steps: int = 0  # K BC steps of the actor mean on the demos before online RL

    def __post_init__(self) -> None:
        _check_positive("init.bc_warmstart_steps", self.bc_warmstart_steps, allow_zero=True)


@dataclass
class DemosConfig:
    root: str = ""  # LeRobot v3 dataset dir (``chunkwise collect`` output); empty = none
    scripted_episodes: int = 0  # if root is empty: generate this many scripted-expert episodes
    max_episodes: int = 0  # use at most this many dataset episodes (0 = all)

    def __post_init__(self) -> None:
        _check_positive("demos.scripted_episodes", self.scripted_episodes, allow_zero=True)
        _check_positive("demos.max_episodes", self.max_episodes, allow_zero=True)


@dataclass
class RLConfig(SACConfig):
    env: EnvConfig = field(default_factory=lambda: MetaWorldEnvConfig(task="reach-v3", max_episode_steps=200))
    init: InitConfig = field(default_factory=InitConfig)
    demos: DemosConfig = field(default_factory=DemosConfig)
    online_steps: int = 20_000  # environment (control) steps of online interaction
    offline_ratio: float = 0.5  # fraction of every batch drawn from the demonstrations
    utd_ratio: float = 1.0  # gradient updates per environment step
    update_after: int = 0  # env steps before the first update (replay warm-up)
    reward_type: RewardType = "sparse"
    reward_scale: float = 1.0  # dense rewards only
    replay_capacity: int = 200_000
    eval_every: int = 2_000
    eval_episodes: int = 10
    save_every: int = 5_000
    keep_checkpoints: int = 2  # newest step directories kept (plus the step-0 initialisation)
    log_every: int = 200  # updates per averaged "train" metrics line
    seed: int = 0
    num_threads: int = 1
    output_dir: str = "outputs/rl"
    resume: bool = False  # continue the run in output_dir from its last checkpoint
    overwrite: bool = False  # replace the run in output_dir (its metrics, summary, checkpoints)
    progress: bool = True
    # --backend=ray: n_actors Ray rollout actors feed this learner (rl/distributed.py, docs/scale.md)
    backend: str = "local"  # "local": rollouts in this process; "ray": n_actors Ray actors
    n_actors: int = 1  # rollout actors (--backend=ray), each with its own env and seeds
    weight_sync_every: int = 100  # learner updates between actor-weight broadcasts (--backend=ray)
    ray: RayConfig = field(default_factory=RayConfig)  # --ray.address, --ray.num_cpus_per_task (per actor), ...

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("reward_type", self.reward_type, RewardType)
        if self.backend not in ("local", "ray"):
            raise ValueError(f"unknown --backend={self.backend!r}; valid: local, ray")
        _check_positive("n_actors", self.n_actors)
        _check_positive("weight_sync_every", self.weight_sync_every)
        if self.n_actors > 1 and self.backend != "ray":
            raise ValueError("--n_actors > 1 needs --backend=ray")
        if not 0.0 <= self.offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {self.offline_ratio}")
        for name in ("online_steps", "update_after"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("utd_ratio", "replay_capacity", "eval_every", "eval_episodes", "save_every", "log_every",
                     "num_threads", "reward_scale", "keep_checkpoints"):
            _check_positive(name, getattr(self, name))
        if not self.output_dir:
            raise ValueError("output_dir must not be empty")
        if self.reference_policy == "bc" and not (self.init.path or self.init.bc_warmstart_steps):
            raise ValueError("--reference_policy=bc freezes the BC-initialised actor: give --init.path "
                             "or --init.bc_warmstart_steps > 0")
        if self.reference_policy != "none" and self.backend == "ray":
            raise ValueError("--reference_policy needs the critic at every decision; the Ray rollout actors "
                             "only receive actor weights: use --backend=local")
        if self.resume and self.overwrite:
            raise ValueError("--resume=true and --overwrite=true contradict each other; give one")


def config_dict(cfg: RLConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["env"] = {"type": cfg.env.type, **asdict(cfg.env)}
    return d


class MetricsLog:
    """Append-only JSONL (one object per line) + a learning-curve PNG."""

    def __init__(self, out: Path) -> None:
        self.path = out / "metrics.jsonl"
        self.png = out / "learning_curve.png"

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate(self, env_steps: int) -> int:
        """Keep the lines written up to a checkpoint at ``env_steps``; -> lines dropped.

        Everything logged before a save at step X has ``env_steps <= X`` (the ``init`` line
        has none) and everything after it ``> X``, so the kept part is the prefix up to the
        first line past X; a torn last line (killed mid-write) is dropped too.
        """
        if not self.path.is_file():
            return 0
        lines = self.path.read_text().splitlines()
        keep: list[str] = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if rec.get("env_steps", 0) > env_steps:
                break
            keep.append(line)
        if len(keep) < len(lines):
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            tmp.replace(self.path)
        return len(lines) - len(keep)

    def records(self, kind: str) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if r.get("kind") == kind]

    def plot(self, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ev = self.records("eval")
        if not ev:
            return
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["env_steps"] for r in ev], [100 * r["success_rate"] for r in ev], marker="o")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(-5, 105)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        tmp = self.png.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(self.png)


def demo_seed_base(seed: int) -> int:
    """First reset seed of the scripted demonstrations of run ``seed`` (then +1, +2, ...)."""
    return 500_000 + 1000 * seed


def load_demos(cfg: RLConfig) -> list:  # type: ignore[type-arg]
    terminate = bool(getattr(cfg.env, "terminate_on_success", True))
    if cfg.demos.root:
        eps = load_dataset_episodes(cfg.demos.root, cfg.reward_type, cfg.reward_scale, terminate)
        return eps[: cfg.demos.max_episodes] if cfg.demos.max_episodes else eps
    if cfg.demos.scripted_episodes:
        # demo seeds are disjoint from training (seed*1e4 + i) and eval (1e6 + i) seeds
        return scripted_episodes(cfg.env, cfg.demos.scripted_episodes, demo_seed_base(cfg.seed),
                                 cfg.reward_type, cfg.reward_scale)
    return []


RUN_FILES = ("metrics.jsonl", "learning_curve.png", "summary.json")


def prepare_output_dir(cfg: RLConfig) -> Path:
    """``chunkwise.common.files.prepare_output_dir``: a previous run is refused unless
    ``--resume=true`` (kept) or ``--overwrite=true`` (what a run writes is deleted:
    metrics, curve, summary, checkpoints/; nothing else)."""
    from chunkwise.common.files import prepare_output_dir as prepare

    return prepare(cfg.output_dir, overwrite=cfg.overwrite, resume=cfg.resume,
                   owned=(*RUN_FILES, CHECKPOINTS, "config.json"))


class RLTrainer:
    """Owns env, learner, replays and logs; ``run()`` is the whole ``chunkwise rl`` command."""

    def __init__(self, cfg: RLConfig) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.out = prepare_output_dir(cfg)
        self.ckpts = self.out / CHECKPOINTS
        self.adopted: dict[str, Any] = {}
        if cfg.init.path and cfg.init.adopt_sizes:
            from chunkwise.rl.init import adopt_bc_sizes

            self.adopted = adopt_bc_sizes(cfg, cfg.init.path)
        self.env = make_env(cfg.env)
        # what the robot executes while an episode's first chunk is computed; the checkpoint
        # stores it so a loaded IBRL policy fills an empty queue as the learner does
        self.env.reset(seed=EVAL_SEED_BASE)
        self.idle_action = [float(v) for v in self.env.idle_action()]
        obs_dim = int(self.env.observation_spec[OBS_STATE].shape[0])
        self.learner = ChunkSAC(cfg, obs_dim, self.env.action_dim)
        # sync at d = 0 by default; --rollout_delay/--rollout_strategy: the async executor (rl/delayed.py)
        self.runner = make_runner(self.env, self.learner, cfg.reward_type, cfg.reward_scale)
        self.demos = load_demos(cfg)
        d = cfg.rollout_delay  # transitions carry the executed prefix (and next prefix) of d actions
        self.offline = EpisodeReplay(max(1, sum(len(e) for e in self.demos)), obs_dim, self.env.action_dim, d)
        for ep in self.demos:
            self.offline.add_episode(ep)
        self.online = EpisodeReplay(cfg.replay_capacity, obs_dim, self.env.action_dim, d)
        self.replay = MixedReplay(self.offline, self.online, cfg.offline_ratio)
        self.log = MetricsLog(self.out)
        self.env_steps = self.updates = self.episodes = 0
        self.init_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ setup
    def initialize(self) -> None:
        """Observation stats, BC-checkpoint mapping, BC warm start (fresh runs only)."""
        from chunkwise.rl.init import map_bc_checkpoint

        if self.demos:
            states = np.concatenate([e.states for e in self.demos])
            self.learner.set_obs_stats(states.mean(0), states.std(0))
        if self.cfg.init.path:
            self.init_report = map_bc_checkpoint(self.learner, self.cfg.init.path)
            if self.adopted:
                self.init_report["adopted_sizes"] = {k: list(v) for k, v in self.adopted.items()}
        k = self.cfg.init.bc_warmstart_steps
        if k:
            if not self.demos:
                raise ValueError("init.bc_warmstart_steps > 0 needs demonstrations (--demos.root or --demos.scripted_episodes)")
            losses = []
            for _ in tqdm(range(k), desc="bc warm start", disable=not self.cfg.progress):
                batch = self.offline.sample(self.cfg.batch_size, self.cfg.chunk_size, self.cfg.gamma,
                                            self.cfg.obs_history_length, self.rng)
                losses.append(self.learner.bc_update(batch)["bc_loss"])
            self.init_report["bc_warmstart"] = {"steps": k, "first_loss": losses[0], "last_loss": losses[-1]}
        if self.cfg.reference_policy == "bc":
            self.learner.set_reference()
        # the actor optimiser restarts for RL: BC moments would bias the first SAC steps
        self.learner.actor_opt = torch.optim.Adam(self.learner.actor.parameters(), lr=self.cfg.actor_lr)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        """One complete checkpoint directory, then ``checkpoints/last`` is pointed at it."""
        meta = rl_metadata(config_dict(self.cfg), self.learner.obs_dim, self.learner.action_dim, self.env.fps,
                           env_steps=self.env_steps, idle_action=self.idle_action)
        return write_checkpoint(
            self.ckpts, self.env_steps,
            learner=self.learner.state_dict(),
            actor=self.learner.get_weights(),
            replay=replay_tensors(self.online),
            rng={"torch": torch.get_rng_state()},
            config={"obs_dim": self.learner.obs_dim, "action_dim": self.learner.action_dim,
                    "config": config_dict(self.cfg), "metadata": meta.to_dict()},
            train_state={"env_steps": self.env_steps, "updates": self.updates, "episodes": self.episodes,
                         "numpy_rng": self.rng.bit_generator.state, "init_report": self.init_report},
            keep=self.cfg.keep_checkpoints,
        )

    def restore(self) -> None:
        ck = load_checkpoint(self.ckpts)
        self.learner.load_state_dict(ck["learner"])
        restore_replay(self.online, ck["replay"])
        torch.set_rng_state(ck["rng"]["torch"])
        st = ck["train_state"]
        self.env_steps, self.updates, self.episodes = st["env_steps"], st["updates"], st["episodes"]
        self.rng.bit_generator.state = st["numpy_rng"]
        self.init_report = st.get("init_report", {})
        # lines logged after that checkpoint will be logged again by the resumed run
        dropped = self.log.truncate(self.env_steps)
        print(f"--resume: continuing from {ck['path']} at {self.env_steps} env steps"
              + (f" (dropped {dropped} metrics lines logged after it)" if dropped else ""))

    # ------------------------------------------------------------------ loop
    def reference_share(self, before: dict[str, int]) -> dict[str, float]:
        """IBRL: {"reference_share": fraction of the chunks since ``before`` that pi_ref proposed}."""
        if self.learner.reference is None:
            return {}
        n = {k: self.learner.picks[k] - before[k] for k in before}
        return {"reference_share": n["reference"] / max(1, n["rl"] + n["reference"])}

    def evaluate(self) -> dict[str, float]:
        seeds = [EVAL_SEED_BASE + i for i in range(self.cfg.eval_episodes)]
        t0 = time.perf_counter()
        picks = dict(self.learner.picks)
        res = self.runner.evaluate(seeds)
        res.update(self.reference_share(picks))
        rec = {"kind": "eval", "env_steps": self.env_steps, "updates": self.updates, **res,
               "eval_seconds": time.perf_counter() - t0}
        self.log.write(rec)
        self.log.plot(f"{self.cfg.env.task}: actor={self.cfg.actor} critic={self.cfg.critic} seed={self.cfg.seed}")
        return res

    def resume_or_start(self, **init_extra: Any) -> None:
        """``--resume`` with a checkpoint: restore it; otherwise a fresh run (init record,
        first evaluation, step-0 checkpoint). ``init_extra`` goes into the init record."""
        cfg = self.cfg
        if cfg.resume and has_checkpoint(self.out):
            self.restore()
            return
        if cfg.resume:
            print(f"--resume: no checkpoint in {self.ckpts}, starting fresh")
        if self.log.path.exists():
            self.log.path.unlink()
        self.initialize()
        self.log.write({"kind": "init", **self.init_report, "demo_episodes": len(self.demos),
                        "demo_steps": self.offline.size, **init_extra})
        self.evaluate()
        point_best(self.ckpts, self.save())

    def best_success(self) -> float:
        """The best evaluation success of this run so far (its log survives a resume)."""
        return max((r["success_rate"] for r in self.log.records("eval")), default=-1.0)

    def evaluate_and_save(self, next_eval: int, next_save: int) -> tuple[int, int, dict[str, float] | None]:
        """The loop's evaluation and checkpoint rule (both trainers): evaluate at ``next_eval``,
        save at ``next_save``, both at the end; an evaluation that beats every earlier one is
        saved at once, even between save steps, and ``checkpoints/best`` is pointed at it.
        -> (next_eval, next_save, the evaluation or None)."""
        cfg = self.cfg
        end = self.env_steps >= cfg.online_steps
        res, best = None, False
        if self.env_steps >= next_eval or end:
            before = self.best_success()
            res = self.evaluate()
            best = res["success_rate"] > before
            next_eval = (self.env_steps // cfg.eval_every + 1) * cfg.eval_every
        if best or self.env_steps >= next_save or end:
            saved = self.save()
            if best:
                point_best(self.ckpts, saved)
            next_save = (self.env_steps // cfg.save_every + 1) * cfg.save_every
        return next_eval, next_save, res

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.resume_or_start()
        next_eval = (self.env_steps // cfg.eval_every + 1) * cfg.eval_every
        next_save = (self.env_steps // cfg.save_every + 1) * cfg.save_every
        acc: dict[str, list[float]] = {}
        bar = tqdm(total=cfg.online_steps, initial=self.env_steps, desc="rl env steps", disable=not cfg.progress)
        t0 = time.perf_counter()
        while self.env_steps < cfg.online_steps:
            picks = dict(self.learner.picks)
            rollout, ep = self.runner.run(seed=cfg.seed * 10_000 + self.episodes, deterministic=False)
            extra = self.reference_share(picks)
            self.online.add_episode(ep)
            self.episodes += 1
            self.env_steps += len(ep)
            bar.update(len(ep))
            self.log.write({"kind": "episode", "env_steps": self.env_steps, "episode": self.episodes,
                            "success": bool(rollout.success), "length": len(ep), "return": float(ep.rewards.sum()),
                            **extra})
            if self.env_steps >= cfg.update_after and len(self.offline) + len(self.online) >= cfg.batch_size:
                n = int(cfg.utd_ratio * self.env_steps) - self.updates
                for _ in range(max(0, n)):
                    batch = self.replay.sample(cfg.batch_size, cfg.chunk_size, cfg.gamma, cfg.obs_history_length,
                                               self.rng)
                    for k, v in self.learner.update(batch).items():
                        acc.setdefault(k, []).append(v)
                    self.updates += 1
                    if self.updates % cfg.log_every == 0:
                        self.log.write({"kind": "train", "env_steps": self.env_steps, "updates": self.updates,
                                        **{k: float(np.mean(v)) for k, v in acc.items()}})
                        acc = {}
            next_eval, next_save, res = self.evaluate_and_save(next_eval, next_save)
            if res is not None:
                bar.set_postfix(success=f"{res['success_rate']:.2f}")
        bar.close()
        evals = self.log.records("eval")
        summary = {
            "initial_success": evals[0]["success_rate"] if evals else None,
            "final_success": evals[-1]["success_rate"] if evals else None,
            "best_success": max(r["success_rate"] for r in evals) if evals else None,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "episodes": self.episodes,
            "seconds": time.perf_counter() - t0,
        }
        save_json(self.out / "summary.json", summary)
        return summary

    def close(self) -> None:
        self.runner.close()


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(RLConfig, argv, "rl")
    except CLIError:
        return 2
    try:
        if cfg.backend == "ray":
            from chunkwise.common.ray import check_backend
            from chunkwise.rl.distributed import DistributedTrainer

            check_backend("ray")  # ray installed, else the one-line install hint
            trainer: RLTrainer = DistributedTrainer(cfg)
        else:
            trainer = RLTrainer(cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"chunkwise rl: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    print(json.dumps(summary, indent=2))
    return 0
