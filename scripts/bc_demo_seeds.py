"""BC start of ``chunkwise rl`` on its own demonstration seeds against new resets.

    python scripts/bc_demo_seeds.py --env.task=box-close-v3 [any chunkwise rl flag, e.g. --actor=mlp]

Takes the flags of the IBRL-set command of docs/rl.md (3 scripted demos, act actor, NLL BC
warm start of 1000 steps), then the given ones (later flags win), runs only the trainer's
initialisation (observation stats + BC warm start) and evaluates the deterministic actor on
the demo resets and on 10 evaluation resets.
"""

from __future__ import annotations

import sys

import torch

from chunkwise.common.cli import CLIError, parse_cli
from chunkwise.rl.train import EVAL_SEED_BASE, RLConfig, RLTrainer, demo_seed_base

IBRL_SET_FLAGS = [
    "--env.type=metaworld", "--env.max_episode_steps=200", "--env.terminate_on_success=false",
    "--demos.scripted_episodes=3", "--init.bc_warmstart_steps=1000", "--online_steps=0", "--batch_size=128",
    "--actor_net.dim_model=64", "--actor_net.dim_feedforward=128", "--actor_net.log_std_min=-2",
    "--critic_net.hidden_dims=[256,256]", "--bc_loss=nll", "--reward_type=dense", "--reward_scale=0.1",
    "--actor=act", "--critic=chunk", "--chunk_size=5", "--progress=false", "--overwrite=true",
    "--output_dir=outputs/bc_demo_seeds",
]


def main(argv: list[str]) -> int:
    try:
        cfg = parse_cli(RLConfig, IBRL_SET_FLAGS + argv, "python scripts/bc_demo_seeds.py")
    except CLIError:
        return 2
    torch.set_num_threads(cfg.num_threads)
    trainer = RLTrainer(cfg)
    try:
        trainer.initialize()
        print(f"{cfg.env.task} {' '.join(argv)}; demo returns", [round(float(e.rewards.sum()), 1) for e in trainer.demos])
        demo = [demo_seed_base(cfg.seed) + i for i in range(len(trainer.demos))]
        for name, seeds in (("demo seeds", demo), ("eval seeds", [EVAL_SEED_BASE + i for i in range(10)])):
            r = trainer.runner.evaluate(seeds)
            print(f"  {name}: success {round(r['success_rate'] * len(seeds))}/{len(seeds)}, return {r['return']:.1f}")
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
