"""``chunkwise bench rtc``: time per chunk of the flow policy with each prefix mode.

    chunkwise bench rtc [--policy_path=outputs/flow/checkpoints/last] [--n_chunks=100]
                        [--delay=4] [--queued=10] [--num_threads=1]

Guidance overhead = median time per chunk with ``rtc_guided`` / with plain sampling
(``none``). RTC needs one backward pass per Euler step; ``rtc_trained`` and the delta
expert cost nothing extra (the delta expert runs ``delta_num_steps`` small steps). Without
``--policy_path`` a freshly initialised policy of the default size is timed (the cost
does not depend on the weights).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from chunkwise.types import Prefix

MODES = ("none", "rtc_guided", "rtc_trained", "delta_expert")


@dataclass
class BenchRTCConfig:
    policy_path: str = ""  # a flow checkpoint; empty = fresh default-size policy (39-d state, 4-d action)
    n_chunks: int = 100
    warmup: int = 5
    delay: int = 4
    queued: int = 10  # queued actions handed over as the prefix
    num_threads: int = 1
    json_out: str = ""  # optional path for the numbers as JSON

    def __post_init__(self) -> None:
        if self.n_chunks <= 0 or self.warmup < 0:
            raise ValueError(f"need n_chunks > 0 and warmup >= 0, got {self.n_chunks}, {self.warmup}")
        if self.delay < 0 or self.queued < 0:
            raise ValueError(f"delay and queued must be >= 0, got {self.delay}, {self.queued}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")


def _policy(cfg: BenchRTCConfig):
    from chunkwise.policies.flow.policy import FlowPolicy

    if cfg.policy_path:
        return FlowPolicy.from_pretrained(cfg.policy_path)
    from chunkwise.policies.common.trainable import DatasetInfo
    from chunkwise.policies.flow.config import FlowConfig
    from chunkwise.types import FeatureSpec

    info = DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((39,), "float32")}, action_dim=4, fps=80.0,
        stats={"observation.state": {"mean": np.zeros(39), "std": np.ones(39)},
               "action": {"mean": np.zeros(4), "std": np.ones(4)}},
    )
    return FlowConfig(rtc_training=True, delta_expert=True).make_policy(info)


def run(cfg: BenchRTCConfig) -> dict[str, dict[str, float]]:
    torch.set_num_threads(cfg.num_threads)
    policy = _policy(cfg)
    meta = policy.metadata
    state_dim = meta.observation_spec["observation.state"].shape[0]
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.standard_normal((1, state_dim)).astype(np.float32), "task": [meta.extra.get("task", "")]}
    for key in policy.image_keys:  # an image policy: random frames of the camera's spec (decoding is not timed)
        spec = meta.observation_spec[key]
        obs[key] = rng.integers(0, 256, (1, *spec.shape)).astype(spec.dtype)
    queued = min(cfg.queued, meta.chunk_size)
    prefix = [Prefix(rng.uniform(-1, 1, (queued, meta.action_dim)).astype(np.float32), min(cfg.delay, queued))]
    modes = [m for m in MODES if not (m == "rtc_trained" and not policy.config.rtc_training)
             and not (m == "delta_expert" and policy.model.delta is None)]
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        times = []
        for i in tqdm(range(cfg.warmup + cfg.n_chunks), desc=f"bench rtc {mode}", unit="chunk", leave=False):
            t0 = time.perf_counter()
            policy.predict_chunk(obs, prefix, prefix_mode=mode)
            if i >= cfg.warmup:
                times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1e3
        results[mode] = {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean())}
    base = results["none"]["p50_ms"]
    for r in results.values():
        r["ratio_vs_none"] = r["p50_ms"] / base
    return results


def main(argv: list[str]) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(BenchRTCConfig, argv, "bench rtc")
    except CLIError:
        return 2
    results = run(cfg)
    print(f"{'mode':<14}{'p50 ms':>9}{'p90 ms':>9}{'x none':>9}")
    for mode, r in results.items():
        print(f"{mode:<14}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['ratio_vs_none']:>9.2f}")
    print(f"guidance overhead (rtc_guided / none, p50): {results['rtc_guided']['ratio_vs_none']:.2f}x")
    if cfg.json_out:
        from chunkwise.policies.common.checkpoint import write_json_atomic

        write_json_atomic(cfg.json_out, results)
    return 0
