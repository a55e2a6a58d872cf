"""BC start of ``chunkwise rl`` on its own demonstration seeds against new resets.

    python scripts/bc_demo_seeds.py box-close-v3 --bc_steps=1000 [--set actor=mlp chunk_size=1 ...]

Builds the RL trainer as the IBRL-set command of docs/rl.md does (3 scripted demos, act actor,
NLL BC), runs only its initialisation (observation stats + BC warm start), then evaluates the
deterministic actor on the 3 demo resets and on 10 evaluation resets.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses

import torch

from chunkwise.envs.metaworld import MetaWorldEnvConfig
from chunkwise.rl.config import ActorConfig, CriticConfig
from chunkwise.rl.train import EVAL_SEED_BASE, DemosConfig, InitConfig, RLConfig, RLTrainer, demo_seed_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("--bc_steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="RLConfig fields, e.g. actor=mlp actor_net.hidden_dims=(256,256)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = RLConfig(
        env=MetaWorldEnvConfig(task=args.task, max_episode_steps=200, terminate_on_success=False),
        demos=DemosConfig(scripted_episodes=3), init=InitConfig(bc_warmstart_steps=args.bc_steps),
        online_steps=0, batch_size=128, actor="act", critic="chunk", chunk_size=5, bc_loss="nll",
        actor_net=ActorConfig(dim_model=64, dim_feedforward=128, log_std_min=-2),
        critic_net=CriticConfig(hidden_dims=(256, 256)), reward_type="dense", reward_scale=0.1, seed=args.seed,
        output_dir=f"outputs/bc_demo_seeds/{args.task}", overwrite=True, progress=False)
    for kv in args.set:
        key, _, raw = kv.partition("=")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        if key.startswith("actor_net."):
            cfg.actor_net = dataclasses.replace(cfg.actor_net, **{key.removeprefix("actor_net."): value})
        else:
            cfg = dataclasses.replace(cfg, **{key: value})
    trainer = RLTrainer(cfg)
    try:
        trainer.initialize()
        demo = [demo_seed_base(cfg.seed) + i for i in range(3)]
        print(f"{args.task} {' '.join(args.set)} bc_steps={args.bc_steps}; demo returns",
              [round(float(e.rewards.sum()), 1) for e in trainer.demos])
        for name, seeds in (("demo seeds", demo), ("eval seeds", [EVAL_SEED_BASE + i for i in range(10)])):
            r = trainer.runner.evaluate(seeds)
            print(f"  {name}: success {round(r['success_rate'] * len(seeds))}/{len(seeds)}, return {r['return']:.1f}")
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
