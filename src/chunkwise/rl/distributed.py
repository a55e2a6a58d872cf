"""``chunkwise rl --backend=ray --n_actors=N``: N rollout actors on Ray, one learner here.

    chunkwise rl --backend=ray --n_actors=4 --ray.address=auto --env.task=reach-v3 ... \
        --weight_sync_every=100

    learner (this process)                       rollout actor i (a Ray actor, own env)
    ----------------------                       --------------------------------------
    replay (offline demos + online), ChunkSAC    env + ChunkSAC copy used only to act
    submit run_episode(seed_k) to each actor --> episode with the weights it last received
    ray.wait: the first finished episode    <--  Episode (numpy arrays) + its env steps/s
      -> online replay, env_steps += len
      -> floor(utd_ratio * env_steps) - updates SAC updates (same rule as one process)
      -> every weight_sync_every updates: ray.put(actor weights as numpy) once,
         set_weights(ref) on every actor (applied before its next episode)
      -> resubmit to that actor with the next seed
    every eval_every env steps: the eval seeds split across the actors, results merged

Seeds: the k-th episode submitted gets seed ``seed * 10_000 + k`` (as in the single-process
trainer), whichever actor runs it, so actors never share a seed; actor i draws its
exploration noise from its own torch generator seeded ``seed * 1000 + i``. Evaluation uses
the same fixed seeds as one process (``EVAL_SEED_BASE + j``), spread over the actors.

``update_to_data`` and ``eval_every``/``save_every``/``online_steps`` count env steps over
all actors. Once ``online_steps`` is reached, episodes still running are dropped (not added
to the replay), so the final count is the same as with one process.

Why N = 1 is close to, but not bit-identical with, ``--backend=local`` (same seeds): (1) the
single-process trainer samples actions and SAC noise from one torch generator, interleaved;
here the actor has its own generator, so exploration noise differs from the first episode;
(2) the actor starts episode k + 1 as soon as episode k is returned, while the learner is
still doing the updates that episode k triggered, so episode k + 1 runs with weights from
before those updates (one episode of policy lag, plus up to ``weight_sync_every`` updates).
Both are what makes it parallel; the learning curve matches in distribution, not bit for bit.

Weights cross the process boundary as a dict of numpy arrays (``ray.put`` once per
broadcast, no torch module pickled); episodes come back as ``Episode`` dataclasses of numpy
arrays; the config is our own dataclass. ``import chunkwise`` never imports ray.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from chunkwise.rl.train import EVAL_SEED_BASE, RLConfig, RLTrainer


def numpy_weights(learner: Any) -> dict[str, np.ndarray]:
    """The actor's state dict as numpy arrays (what the object store carries)."""
    return {k: v.numpy() for k, v in learner.get_weights().items()}


class RolloutWorker:
    """Body of one rollout actor: its own env, runner and acting copy of the actor network."""

    def __init__(self, cfg: RLConfig, index: int, threads: int = 1) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        from chunkwise.envs import make_env
        from chunkwise.rl.delayed import make_runner
        from chunkwise.rl.learner import ChunkSAC
        from chunkwise.types import OBS_STATE

        torch.set_num_threads(max(1, threads))
        torch.manual_seed(cfg.seed * 1000 + index)
        self.index = index
        self.env = make_env(cfg.env)
        obs_dim = int(self.env.observation_spec[OBS_STATE].shape[0])
        self.learner = ChunkSAC(cfg, obs_dim, self.env.action_dim)
        self.runner = make_runner(self.env, self.learner, cfg.reward_type, cfg.reward_scale)
        self.version = -1

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> int:
        self.learner.load_weights({k: torch.tensor(v) for k, v in weights.items()})
        self.version = version
        return version

    def run_episode(self, seed: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        rollout, ep = self.runner.run(seed=seed, deterministic=False)
        return {"episode": ep, "success": bool(rollout.success), "seed": seed, "actor": self.index,
                "weights_version": self.version, "seconds": time.perf_counter() - t0}

    def evaluate(self, seeds: Sequence[int]) -> dict[str, Any]:
        """Per-episode results (merged by the learner) for deterministic episodes on ``seeds``."""
        out = []
        for s in seeds:
            r, ep = self.runner.run(int(s), deterministic=True)
            out.append({"seed": int(s), "success": bool(r.success), "return": float(ep.rewards.sum()),
                        "steps": int(r.steps)})
        return {"episodes": out, "weights_version": self.version}

    def ping(self) -> int:
        """One deterministic episode before the clock starts: the first episode of a fresh
        process pays one-off costs (GL context, first torch kernels) that would otherwise make
        this actor's first training episode late enough for another actor to take its share."""
        self.runner.run(seed=EVAL_SEED_BASE, deterministic=True)
        return self.index


class DistributedTrainer(RLTrainer):
    """``RLTrainer`` whose episodes and evaluations run on ``n_actors`` Ray actors."""

    def __init__(self, cfg: RLConfig) -> None:
        from chunkwise.common.ray import RaySession

        super().__init__(cfg)
        self._session = RaySession(cfg.ray)
        ray = self.ray = self._session.ray
        cpus = cfg.ray.num_cpus_per_task
        remote_cls = ray.remote(RolloutWorker).options(num_cpus=cpus, max_restarts=0)
        self.actors = [remote_cls.remote(cfg, i, max(1, int(cpus))) for i in range(cfg.n_actors)]
        ray.get([a.ping.remote() for a in self.actors])  # every actor built its env (fail early) and warmed up
        self.version = 0
        self.broadcasts = 0
        self.actor_steps = [0] * cfg.n_actors  # online env steps received from each actor
        self.actor_seconds = [0.0] * cfg.n_actors  # time actors spent in those episodes
        self.update_seconds = 0.0
        self.run_updates = self.run_steps = 0  # updates and env steps of this run() (not of a resumed part)

    # ------------------------------------------------------------------ weights
    def broadcast(self) -> None:
        """One ``ray.put`` of the actor weights; every actor loads them before its next call."""
        self.version = self.updates
        ref = self.ray.put(numpy_weights(self.learner))
        for a in self.actors:
            a.set_weights.remote(ref, self.version)
        self.broadcasts += 1

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        seeds = [EVAL_SEED_BASE + i for i in range(self.cfg.eval_episodes)]
        t0 = time.perf_counter()
        self.broadcast()  # evaluate the current learner, not a stale copy
        n = len(self.actors)
        parts = [seeds[i::n] for i in range(n)]
        got = self.ray.get([a.evaluate.remote(p) for a, p in zip(self.actors, parts) if p])
        eps = sorted((e for g in got for e in g["episodes"]), key=lambda e: e["seed"])
        res = {
            "success_rate": float(np.mean([e["success"] for e in eps])),
            "return": float(np.mean([e["return"] for e in eps])),
            "episode_steps": float(np.mean([e["steps"] for e in eps])),
            "n_episodes": float(len(eps)),
        }
        self.log.write({"kind": "eval", "env_steps": self.env_steps, "updates": self.updates, **res,
                        "eval_seconds": time.perf_counter() - t0, "n_actors": n})
        self.log.plot(f"{self.cfg.env.task}: actor={self.cfg.actor} critic={self.cfg.critic} seed={self.cfg.seed} "
                      f"({n} Ray actors)")
        return res

    # ------------------------------------------------------------------ loop
    def throughput(self, wall: float) -> dict[str, Any]:
        return {
            "learner_updates_per_s": self.run_updates / max(self.update_seconds, 1e-9),
            "learner_updates_per_wall_s": self.run_updates / max(wall, 1e-9),
            "env_steps_per_s": self.run_steps / max(wall, 1e-9),  # all actors, wall clock
            "actor_env_steps_per_s": [s / max(t, 1e-9) for s, t in zip(self.actor_steps, self.actor_seconds)],
            "env_steps_per_actor": list(self.actor_steps),
            "broadcasts": self.broadcasts,
        }

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.resume_or_start(backend="ray", n_actors=cfg.n_actors)
        self.broadcast()
        next_eval = (self.env_steps // cfg.eval_every + 1) * cfg.eval_every
        next_save = (self.env_steps // cfg.save_every + 1) * cfg.save_every
        acc: dict[str, list[float]] = {}
        bar = tqdm(total=cfg.online_steps, initial=self.env_steps, desc=f"rl env steps ({cfg.n_actors} actors)",
                   disable=not cfg.progress)
        t0 = time.perf_counter()
        self.run_updates = self.run_steps = 0
        submitted = self.episodes  # episodes handed out so far (seeds follow it)
        inflight: dict[Any, int] = {}
        if self.env_steps < cfg.online_steps:
            for i, a in enumerate(self.actors):
                inflight[a.run_episode.remote(cfg.seed * 10_000 + submitted)] = i
                submitted += 1
        last_sync = self.updates
        while self.env_steps < cfg.online_steps:
            [ref], _ = self.ray.wait(list(inflight), num_returns=1)
            i = inflight.pop(ref)
            r = self.ray.get(ref)
            ep = r["episode"]
            self.online.add_episode(ep)
            self.episodes += 1
            self.env_steps += len(ep)
            self.run_steps += len(ep)
            self.actor_steps[i] += len(ep)
            self.actor_seconds[i] += r["seconds"]
            bar.update(len(ep))
            self.log.write({"kind": "episode", "env_steps": self.env_steps, "episode": self.episodes,
                            "success": r["success"], "length": len(ep), "return": float(ep.rewards.sum()),
                            "actor": i, "seed": r["seed"], "weights_version": r["weights_version"]})
            if self.env_steps < cfg.online_steps:  # keep the actor busy while the learner updates
                inflight[self.actors[i].run_episode.remote(cfg.seed * 10_000 + submitted)] = i
                submitted += 1
            if self.env_steps >= cfg.update_after and len(self.offline) + len(self.online) >= cfg.batch_size:
                n = int(cfg.utd_ratio * self.env_steps) - self.updates
                tu = time.perf_counter()
                for _ in range(max(0, n)):
                    batch = self.replay.sample(cfg.batch_size, cfg.chunk_size, cfg.gamma, cfg.obs_history_length,
                                               self.rng)
                    for k, v in self.learner.update(batch).items():
                        acc.setdefault(k, []).append(v)
                    self.updates += 1
                    self.run_updates += 1
                    if self.updates - last_sync >= cfg.weight_sync_every:
                        self.broadcast()
                        last_sync = self.updates
                    if self.updates % cfg.log_every == 0:
                        self.log.write({"kind": "train", "env_steps": self.env_steps, "updates": self.updates,
                                        **{k: float(np.mean(v)) for k, v in acc.items()}})
                        acc = {}
                self.update_seconds += time.perf_counter() - tu
            wall = time.perf_counter() - t0
            tp = self.throughput(wall)
            bar.set_postfix(upd_s=f"{tp['learner_updates_per_s']:.0f}", steps_s=f"{tp['env_steps_per_s']:.0f}")
            if self.env_steps >= next_eval or self.env_steps >= cfg.online_steps:  # logged beside the evaluation
                self.log.write({"kind": "throughput", "env_steps": self.env_steps, "updates": self.updates, **tp})
            next_eval, next_save, res = self.evaluate_and_save(next_eval, next_save)
            if res is not None:
                bar.set_postfix(success=f"{res['success_rate']:.2f}", upd_s=f"{tp['learner_updates_per_s']:.0f}",
                                steps_s=f"{tp['env_steps_per_s']:.0f}")
        # episodes still in flight past online_steps are not added (counts match one process);
        # close() kills the actors
        bar.close()
        evals = self.log.records("eval")
        wall = time.perf_counter() - t0
        summary = {
            "initial_success": evals[0]["success_rate"] if evals else None,
            "final_success": evals[-1]["success_rate"] if evals else None,
            "best_success": max(r["success_rate"] for r in evals) if evals else None,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "episodes": self.episodes,
            "seconds": wall,
            "backend": "ray",
            "n_actors": cfg.n_actors,
            **self.throughput(wall),
        }
        from chunkwise.rl.checkpoint import save_json

        save_json(self.out / "summary.json", summary)
        return summary

    def close(self) -> None:
        try:
            for a in getattr(self, "actors", []):
                self.ray.kill(a)
        finally:
            super().close()
            if hasattr(self, "_session"):
                self._session.close()
