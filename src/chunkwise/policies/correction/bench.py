"""Per-step cost of the correction head against an env step and a base chunk.

    python -m chunkwise.policies.correction.bench --head=outputs/delay/corr_push_g1b \\
        [--policy_path=<flow checkpoint>] [--task=push-v3] [--n=2000]

Medians of ``head.correct`` (one call per control step), ``env.step`` and, with a
policy, ``predict_chunk`` at batch 1 (one call per chunk), on one thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _median_ms(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chunkwise.policies.correction.bench")
    ap.add_argument("--head", required=True)
    ap.add_argument("--policy_path", default=None)
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)
    import torch

    import chunkwise.envs  # noqa: F401
    from chunkwise.envs.base import EnvConfig
    from chunkwise.policies.correction.head import CorrectionHead
    from chunkwise.types import OBS_STATE, stack_observations

    torch.set_num_threads(1)
    head = CorrectionHead.load(args.head)
    env = EnvConfig.get_choice_class("metaworld")(task=args.task).make()
    obs = env.reset(seed=0)
    a = np.zeros(env.action_dim, np.float32)
    out = {"head_ms": _median_ms(lambda: head.correct(obs[OBS_STATE], a, 5, 5), args.n)}

    def step():
        nonlocal obs
        obs, *_rest, trunc, _info = env.step(a)
        if trunc:
            obs = env.reset(seed=0)

    out["env_step_ms"] = _median_ms(step, args.n)
    if args.policy_path:
        from chunkwise.policies import load

        pol = load(args.policy_path)
        batch = stack_observations([obs])
        out["chunk_ms"] = _median_ms(lambda: pol.predict_chunk(batch), max(20, args.n // 50))
    out["head_over_env_step"] = out["head_ms"] / out["env_step_ms"]
    if "chunk_ms" in out:
        out["head_over_chunk"] = out["head_ms"] / out["chunk_ms"]
    print(json.dumps({k: round(v, 4) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
