"""``chunkwise eval``: one policy, one execution strategy, one delay, N episodes.

    chunkwise eval --env.type=metaworld --env.task=push-v3 --policy.type=scripted \
        --policy.chunk_size=50 --strategy=async --aggregate_fn_name=weighted_average \
        --actions_per_chunk=50 --chunk_size_threshold=0.5 --inference_delay=4 --n_episodes=10

Runs on the virtual clock (deterministic; see runtime/virtual_clock.py). With
``--server=host:port`` (and ``--token``, ``--tls_root``, ``--time_scale``) the same
episodes run against a real PolicyServer on the wall clock, through the same control loop
and controller, and produce the same report plus the measured round trips and the delay
(in control steps) each chunk actually had::

    chunkwise eval --server=127.0.0.1:8080 --env.task=push-v3 --strategy=rtc_trained \
        --actions_per_chunk=20 --n_episodes=10
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chunkwise.envs.base import EnvConfig
from chunkwise.policies.correction.source import CorrectionSource
from chunkwise.eval.common import (
    CLIError,
    parse_cli,
    atomic_write_json,
    check_common,
    check_strategy_name,
    default_env,
    execution_note,
    resolve_strategy,
)
from chunkwise.eval.metrics import summarize
from chunkwise.eval.ray_backend import RayConfig, check_backend
from chunkwise.eval.rollouts import EpisodeJob, PolicySource, episode_seeds, run_jobs
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.scheduling.delay import FixedDelay, delay_steps_from_ms


@dataclass
class EvalConfig:
    env: EnvConfig = field(default_factory=default_env)
    policy: PolicySource = field(default_factory=PolicySource)
    n_episodes: int = 10
    seed: int = 0  # episode i uses seed + i
    # "sync", "async" (with aggregate_fn_name), or any registered strategy name
    strategy: str = "async"
    aggregate_fn_name: str = "weighted_average"
    actions_per_chunk: int | None = None  # None = the policy's chunk size (H)
    chunk_size_threshold: float = 0.5
    n_action_steps: int | None = None  # sync: actions executed per chunk (default actions_per_chunk)
    temporal_ensemble_m: float = 0.01
    inference_delay: int = 0  # control steps between capturing obs_t and its chunk arriving
    inference_delay_ms: float | None = None  # if set: d = ceil(ms * env.fps / 1000)
    n_workers: int = 1
    output_dir: str | None = None
    overwrite: bool = False  # replace an eval.json already in --output_dir
    # --- against a PolicyServer (wall clock) instead of the virtual clock ---
    server: str | None = None  # host:port of a PolicyServer; the server chose the policy
    token: str = ""  # the server's --token (required off loopback)
    tls_root: str = ""  # PEM file of the CA of the server's TLS certificate
    time_scale: float = 1.0  # run the env's clock this many times faster than real time
    request_timeout_s: float = 5.0  # a chunk not back after this long is asked for again
    connect_timeout_s: float = 5.0  # give up reaching the server after this long
    backend: str = "pool"  # virtual clock: "pool" (n_workers processes) or "ray" (Ray tasks, --ray.*; docs/scale.md)
    ray: RayConfig = field(default_factory=RayConfig)
    correction: CorrectionSource = field(default_factory=CorrectionSource)  # head for <base>+correction

    def __post_init__(self) -> None:
        check_backend(self.backend, self.server)
        check_strategy_name(self.strategy)
        self.correction.check_used([self.strategy])
        if self.server:
            self.remote_config()  # validates address, time_scale, timeouts, tls_root
            if self.policy.type != "scripted":
                raise ValueError("--server: the server chose the policy; drop --policy.path (give it to chunkwise serve)")
        chunk = self.policy.chunk_size if self.policy.type == "scripted" and not self.server else None
        if self.actions_per_chunk is None and chunk is not None:
            self.actions_per_chunk = chunk
        if self.inference_delay < 0:
            raise ValueError(f"inference_delay must be >= 0 control steps, got {self.inference_delay}")
        if self.inference_delay_ms is not None and (not math.isfinite(self.inference_delay_ms) or self.inference_delay_ms < 0):
            raise ValueError(f"inference_delay_ms must be >= 0, got {self.inference_delay_ms}")
        check_common(
            chunk_size_threshold=self.chunk_size_threshold, actions_per_chunk=self.actions_per_chunk or 1,
            n_episodes=self.n_episodes, n_workers=self.n_workers, chunk_size=chunk,
            aggregate_fn_name=self.aggregate_fn_name,
        )
        if self.actions_per_chunk is not None:  # else known once the policy is (checkpoint, server)
            self.base_execution()  # validates n_action_steps, m

    def with_chunk_size(self, chunk_size: int) -> "EvalConfig":
        """``actions_per_chunk`` defaults to the policy's chunk size; checked against it."""
        if self.actions_per_chunk is None:
            return replace(self, actions_per_chunk=int(chunk_size))
        if self.actions_per_chunk > chunk_size:
            where = self.server or self.policy.path
            raise ValueError(
                f"--actions_per_chunk={self.actions_per_chunk} > the policy's chunk size {chunk_size} ({where}); "
                f"use --actions_per_chunk<={chunk_size} or leave it out (default: the chunk size)"
            )
        return self

    def remote_config(self):  # noqa: ANN201 - chunkwise.clients.realtime.RemoteConfig
        from chunkwise.clients.realtime import RemoteConfig

        return RemoteConfig(
            address=str(self.server), token=self.token, tls_root=self.tls_root, time_scale=self.time_scale,
            request_timeout_s=self.request_timeout_s, connect_timeout_s=self.connect_timeout_s,
        )

    @property
    def delay_steps(self) -> int:
        if self.inference_delay_ms is not None:
            return delay_steps_from_ms(self.inference_delay_ms, self.env.fps)
        return self.inference_delay

    def base_execution(self) -> ExecutionConfig:
        return ExecutionConfig(
            strategy="sync" if self.strategy == "sync" else "async",
            aggregate_fn_name=self.aggregate_fn_name,
            actions_per_chunk=self.actions_per_chunk,
            chunk_size_threshold=self.chunk_size_threshold,
            n_action_steps=self.n_action_steps,
            temporal_ensemble_m=self.temporal_ensemble_m,
            max_steps=self.env.max_episode_steps,
        )


def check_checkpoint(cfg: EvalConfig) -> EvalConfig:
    """Load the checkpoint once and check it against the env before any episode runs;
    returns the config with ``actions_per_chunk`` resolved."""
    if cfg.policy.type == "scripted":
        return cfg
    from chunkwise.eval.rollouts import check_policy_matches_env, task_mismatch
    from chunkwise.policies import load

    cfg.policy.check_type()
    policy = load(cfg.policy.path)  # type: ignore[arg-type]
    cfg = cfg.with_chunk_size(policy.metadata.chunk_size)
    env = cfg.env.make()
    try:
        check_policy_matches_env(policy, env, cfg.policy.path or "")
        warn = task_mismatch(policy, env, cfg.policy.path or "the policy")
        if warn:
            print(f"chunkwise eval: {warn}", file=sys.stderr)
    finally:
        env.close()
    return cfg


def evaluate(cfg: EvalConfig, progress: bool = True, check: bool = True) -> dict[str, Any]:
    """Run the episodes on the virtual clock; returns {"summary", "episodes", "config"}."""
    if check or cfg.actions_per_chunk is None:
        cfg = check_checkpoint(cfg)
    execution, strat, plugins = resolve_strategy(cfg.strategy, cfg.base_execution())
    delay = FixedDelay(cfg.delay_steps)
    note = execution_note(execution, cfg.delay_steps)
    if note:
        print(f"chunkwise eval: note: {note}", file=sys.stderr)
    jobs = [
        EpisodeJob(cfg.env, cfg.policy, execution, delay, s, strat, plugins)
        for s in episode_seeds(cfg.seed, cfg.n_episodes)
    ]
    desc = f"{cfg.env.task} {cfg.strategy} d={cfg.delay_steps}"
    if progress:
        episodes = run_jobs(jobs, cfg.n_workers, desc=desc, backend=cfg.backend, ray=cfg.ray)
    else:
        from chunkwise.eval.rollouts import iter_jobs

        episodes = list(iter_jobs(jobs, cfg.n_workers, backend=cfg.backend, ray=cfg.ray))
    return {
        "config": _config_dict(cfg),
        "execution": asdict(execution),
        "delay_steps": cfg.delay_steps,
        "summary": summarize(episodes),
        "episodes": [e.to_dict() for e in episodes],
    }


def _config_dict(cfg: EvalConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["env"] = {"type": cfg.env.type, **asdict(cfg.env)}
    if d.get("token"):
        d["token"] = "***"  # results files get shared; the token is a credential
    return d


def evaluate_remote(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """The same episodes against the PolicyServer at ``cfg.server`` (wall clock)."""
    from chunkwise.clients.realtime import percentiles
    from chunkwise.clients.sim_client import SimClient
    from chunkwise.eval.metrics import episode_metrics
    from chunkwise.eval.rollouts import check_policy_matches_env, task_mismatch
    from chunkwise.runtime.strategies import get_strategy

    spec = get_strategy(cfg.strategy) if cfg.strategy != "async" else None
    if spec is not None and spec.local_only:
        raise ValueError(f"strategy {cfg.strategy!r} cannot run against a server: {spec.local_only}")
    remote = cfg.remote_config().connect()
    env = None
    sim = None
    rollouts = []
    try:
        cfg = cfg.with_chunk_size(remote.metadata.chunk_size)
        execution, _, _ = resolve_strategy(cfg.strategy, cfg.base_execution())
        # A client only learns a chunk's delay when it is back: RTC is told the recent delays.
        execution = replace(execution, prefix_delay="estimated")
        policy = spec.wrap_policy(remote) if spec is not None and spec.wrap_policy else remote
        env = cfg.env.make()
        check_policy_matches_env(policy, env, f"the policy served at {cfg.server}")
        warn = task_mismatch(policy, env, f"the policy served at {cfg.server}")
        if warn:
            print(f"chunkwise eval: {warn}", file=sys.stderr)
        sim = SimClient(env, policy, execution, time_scale=cfg.time_scale, request_timeout_s=cfg.request_timeout_s)
        from tqdm import tqdm

        seeds = episode_seeds(cfg.seed, cfg.n_episodes)
        for s in tqdm(seeds, desc=f"{cfg.env.task} {cfg.strategy} @ {cfg.server}", unit="ep", disable=not progress):
            rollouts.append(sim.run_episode(seed=s))
    finally:
        if sim is not None:
            sim.close()
        remote.close()
        if env is not None:
            env.close()
    episodes = [episode_metrics(r) for r in rollouts]
    rtt = [x for r in rollouts for x in r.info["rtt_ms"]]
    server = [x for r in rollouts for x in r.info["server_ms"]]
    remote_info = {
        "server": cfg.server,
        "time_scale": cfg.time_scale,
        "round_trip_ms": percentiles(rtt),
        "server_ms": percentiles(server),
        "server_model_ms": percentiles([x for r in rollouts for x in r.info["model_ms"]]),
        "mean_batch_size": float(sum(x for r in rollouts for x in r.info["batch_sizes"]) / max(1, len(server))),
        "stale_episode_replies": int(sum(r.info["stale_episode_replies"] for r in rollouts)),
        "errors": int(sum(len(r.info["errors"]) for r in rollouts)),
        "overrun_ticks": int(sum(r.info["overruns"] for r in rollouts)),
        "reconnects": int(max((r.info["reconnects"] for r in rollouts), default=0)),
        "policy": policy.metadata.to_dict(),
    }
    return {
        "config": _config_dict(cfg),
        "execution": asdict(execution),
        "delay_steps": "measured",
        "summary": summarize(episodes),
        "episodes": [e.to_dict() for e in episodes],
        "remote": remote_info,
    }


def format_summary(result: dict[str, Any]) -> str:
    s = result["summary"]

    def m(key: str, fmt: str = "{:.1f}") -> str:
        v = s[key]
        if v["mean"] is None:
            return "-"
        ci = "" if v["ci_low"] is None else f" [{fmt.format(v['ci_low'])}, {fmt.format(v['ci_high'])}]"
        return fmt.format(v["mean"]) + ci

    lines = [
        f"episodes           {s['n_episodes']}",
        f"success rate       {s['success_rate']:.3f} [{s['success_ci_low']:.3f}, {s['success_ci_high']:.3f}] (Wilson 95%)",
        f"steps to success   {m('steps_to_success')}",
        f"return             {m('episode_return')}",
        f"stall steps        {m('stall_steps')}",
        f"inferences         {m('inferences')}",
        f"seam |a_t-a_t-1|   {m('seam_discontinuity', '{:.4f}')}",
        f"inside |a_t-a_t-1| {m('inside_discontinuity', '{:.4f}')}",
        f"jerk               {m('jerk', '{:.4f}')}",
    ]
    counts = {int(d): n for d, n in (s.get("delay_counts") or {}).items()}
    if counts:
        import numpy as np

        steps = np.repeat(list(counts), list(counts.values()))
        p50, p90 = np.percentile(steps, [50, 90])
        lines.append(
            f"chunk delay        mean {steps.mean():.1f} steps (p50 {p50:g}, p90 {p90:g}, max {steps.max()}; "
            f"{steps.size} chunks)"
        )
    r = result.get("remote")
    if r:
        rtt = r["round_trip_ms"]
        lines.append(
            f"round trip ms      p50 {rtt['p50']:.2f}  p90 {rtt['p90']:.2f}  p99 {rtt['p99']:.2f} "
            f"(server {r['server_ms']['p50']:.2f}, batch {r['mean_batch_size']:.1f})"
        )
        lines.append(
            f"server run         {r['server']} x{r['time_scale']:g} real time; errors {r['errors']}, "
            f"stale replies {r['stale_episode_replies']}, late ticks {r['overrun_ticks']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_cli(EvalConfig, argv, "eval")
    except CLIError:
        return 2
    cfg.correction.export()  # strategies <base>+correction (and sweep workers) load it
    try:
        if cfg.output_dir:
            from chunkwise.common.files import prepare_output_dir

            prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite, resume=None)
            atomic_write_json(Path(cfg.output_dir) / "config.json", _config_dict(cfg))
        if cfg.server:
            result = evaluate_remote(cfg)
        else:
            cfg = check_checkpoint(cfg)
            result = None
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as e:
        print(f"chunkwise eval: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # RemoteError: the server refused a request
        if type(e).__name__ != "RemoteError":
            raise
        print(f"chunkwise eval: error: the server at {cfg.server} answered {e}", file=sys.stderr)
        return 2
    if result is None:
        from chunkwise.runtime.strategies import IncompatibleStrategyError

        try:
            result = evaluate(cfg, check=False)
        except IncompatibleStrategyError as e:  # found when the first episode wraps the policy
            print(f"chunkwise eval: error: {e}", file=sys.stderr)
            return 2
    print(format_summary(result))
    if cfg.output_dir:
        out = Path(cfg.output_dir) / "eval.json"
        atomic_write_json(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
