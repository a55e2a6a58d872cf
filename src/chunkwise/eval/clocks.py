"""``chunkwise bench clocks``: does the virtual clock predict what runs against a server?

For each model latency L (the served policy padded to take at least L ms per forward pass):

    1. wall:    ``chunkwise serve`` (a real process on loopback) + ``chunkwise eval --server``:
                N episodes in real time (x ``time_scale``); every chunk's delay in control
                steps is recorded
    2. virtual: the same policy, strategy and seeds on the virtual clock, twice: with delays
                drawn independently from the distribution measured in 1 (``SampledDelay``),
                and with each episode replaying the delay sequence measured for its seed
                (``ReplayDelay``; bursts of long delays stay where they were)
    3. compare: success rate (Wilson 95 % CI), seam discontinuity and steps to success
                (Student-t 95 % CI); a virtual estimate "agrees" when it lies inside the
                wall-clock interval

    chunkwise bench clocks --policy_path=outputs/act_push/checkpoints/last --env.task=push-v3 \\
        --strategy=latest_only --model_ms=25,50,100 --n_episodes=50 --output_dir=outputs/clocks/push_act

Each (latency, clock) cell is written as soon as it finishes (``wall_<L>.json``,
``virtual_<L>.json``) and skipped when rerun, so a long run can be resumed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chunkwise.envs.base import EnvConfig
from chunkwise.eval.common import CLIError, atomic_write_json, atomic_write_text, default_env, parse_cli, resolve_strategy


@dataclass
class ClocksConfig:
    env: EnvConfig = field(default_factory=default_env)
    policy_path: str = ""  # a checkpoint; "" = the MetaWorld scripted expert served on the state
    strategy: str = "latest_only"
    aggregate_fn_name: str = "weighted_average"  # for --strategy=async
    model_ms: str = "25,50,100"  # comma-separated minimum model latencies
    n_episodes: int = 50
    seed: int = 1000
    actions_per_chunk: int = 20
    chunk_size_threshold: float = 0.5
    n_action_steps: int | None = None
    time_scale: float = 1.0
    output_dir: str = "outputs/clocks"
    progress: bool = True

    def __post_init__(self) -> None:
        try:
            self.latencies = [float(x) for x in str(self.model_ms).split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--model_ms must be comma-separated milliseconds, got {self.model_ms!r}") from None
        if not self.latencies or any(x < 0 for x in self.latencies):
            raise ValueError(f"--model_ms needs latencies >= 0, got {self.model_ms!r}")
        if self.n_episodes <= 0:
            raise ValueError(f"n_episodes must be positive, got {self.n_episodes}")
        if self.policy_path and not Path(self.policy_path, "config.json").is_file():
            raise ValueError(f"--policy_path={self.policy_path!r} is not a checkpoint (no config.json)")

    def serve_args(self, ms: float) -> list[str]:
        if self.policy_path:
            return [f"--policy.path={self.policy_path}", f"--policy.model_ms={ms:g}"]
        return ["--policy.type=expert", f"--policy.task={self.env.task}",
                f"--policy.chunk_size={self.actions_per_chunk}", f"--policy.model_ms={ms:g}"]

    def eval_config(self, server: str | None = None) -> Any:
        from chunkwise.eval.run import EvalConfig

        return EvalConfig(
            env=self.env, n_episodes=self.n_episodes, seed=self.seed, strategy=self.strategy,
            aggregate_fn_name=self.aggregate_fn_name, actions_per_chunk=self.actions_per_chunk,
            chunk_size_threshold=self.chunk_size_threshold, n_action_steps=self.n_action_steps,
            server=server, time_scale=self.time_scale,
        )

    def local_policy(self) -> Any:
        if self.policy_path:
            from chunkwise.policies import load

            return load(self.policy_path)
        from chunkwise.policies.testing import ExpertPolicy, TestPolicyConfig

        return ExpertPolicy(TestPolicyConfig(type="expert", task=self.env.task, chunk_size=self.actions_per_chunk))


def run_wall(cfg: ClocksConfig, ms: float) -> dict[str, Any]:
    from chunkwise.eval.run import evaluate_remote
    from chunkwise.serving.process import ServerProcess

    with ServerProcess(cfg.serve_args(ms), lifetime_s=3600) as srv:
        t0 = time.monotonic()
        result = evaluate_remote(cfg.eval_config(srv.address), progress=cfg.progress)
    result["wall_s"] = time.monotonic() - t0
    result["model_ms"] = ms
    return result


def run_virtual(cfg: ClocksConfig, ms: float, wall: dict[str, Any], replay: bool = False) -> dict[str, Any]:
    from tqdm import tqdm

    from chunkwise.eval.metrics import episode_metrics, summarize
    from chunkwise.eval.rollouts import episode_seeds
    from chunkwise.runtime.strategies import get_strategy
    from chunkwise.runtime.virtual_clock import VirtualClockExecutor
    from chunkwise.scheduling.delay import SampledDelay

    counts = {int(d): n for d, n in wall["summary"]["delay_counts"].items()}
    total = sum(counts.values())
    delay = SampledDelay(sorted(counts), [counts[d] / total for d in sorted(counts)])
    model: Any = delay
    if replay:
        from chunkwise.scheduling.delay import ReplayDelay

        model = ReplayDelay({int(e["seed"]): e["delays"] for e in wall["episodes"]}, fallback=delay)
    execution, strat, _ = resolve_strategy(cfg.strategy, cfg.eval_config().base_execution())
    execution = replace(execution, prefix_delay="estimated")  # what the wall-clock client could know
    policy = cfg.local_policy()
    spec = get_strategy(strat) if strat else None
    if spec is not None and spec.wrap_policy is not None:
        policy = spec.wrap_policy(policy)
    env = cfg.env.make()
    try:
        ex = VirtualClockExecutor(env, policy, execution, model)
        seeds = episode_seeds(cfg.seed, cfg.n_episodes)
        episodes = [episode_metrics(ex.run_episode(s))
                    for s in tqdm(seeds, desc=f"virtual L={ms:g}ms{' replay' if replay else ''}", unit="ep",
                                  disable=not cfg.progress)]
    finally:
        env.close()
    return {"model_ms": ms, "replay": replay,
            "delay_model": {"values": list(delay.values), "probs": [float(p) for p in delay._p]},
            "execution": asdict(execution), "summary": summarize(episodes), "episodes": [e.to_dict() for e in episodes]}


def _inside(x: float | None, lo: float | None, hi: float | None) -> bool | None:
    if x is None or lo is None or hi is None:
        return None
    return lo - 1e-12 <= x <= hi + 1e-12


METRICS = ("success", "seam_discontinuity", "steps_to_success")


def _triple(summary: dict[str, Any], key: str) -> list:
    if key == "success":
        return [summary["success_rate"], summary["success_ci_low"], summary["success_ci_high"]]
    return [summary[key]["mean"], summary[key]["ci_low"], summary[key]["ci_high"]]


def compare(wall: dict[str, Any], virtual: dict[str, Any], replay: dict[str, Any] | None = None) -> dict[str, Any]:
    """One latency: the wall-clock estimates and, per virtual run, whether each lies in the wall CI."""
    w = wall["summary"]
    counts = {int(d): n for d, n in w["delay_counts"].items()}
    total = sum(counts.values())
    row: dict[str, Any] = {
        "model_ms": wall["model_ms"],
        "mean_delay": sum(d * n for d, n in counts.items()) / total if total else None,
        "delay_range": [min(counts), max(counts)] if counts else None,
        "rtt_p50_ms": wall["remote"]["round_trip_ms"]["p50"],
        "late_ticks": wall["remote"]["overrun_ticks"],
        "wall": {k: _triple(w, k) for k in METRICS},
    }
    for name, run in (("virtual", virtual), ("replay", replay)):
        if run is None:
            continue
        v = run["summary"]
        row[name] = {k: _triple(v, k) for k in METRICS}
        row[f"{name}_agrees"] = {
            k: _inside(_triple(v, k)[0], *_triple(w, k)[1:]) for k in METRICS
        }
    return row


def _fmt(triple: list, pct: bool = False, digits: int = 3) -> str:
    m, lo, hi = triple
    if m is None:
        return "-"
    if pct:
        return f"{100 * m:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else ""
    return f"{m:.{digits}f}{ci}"


def format_rows(rows: list[dict[str, Any]], title: str) -> str:
    """Per latency: the wall-clock row, then each virtual row (✓: inside the wall-clock 95 % CI)."""
    mark = {True: " ✓", False: " ✗", None: ""}
    lines = [title, "",
             "| model ms | clock | chunk delay, steps | success | seam discontinuity | steps to success |",
             "|---|---|---|---|---|---|"]
    labels = {"virtual": "virtual, i.i.d. delays", "replay": "virtual, replayed delays"}
    for r in rows:
        lo, hi = r["delay_range"] or (None, None)
        w = r["wall"]
        lines.append(f"| {r['model_ms']:g} | wall (rtt p50 {r['rtt_p50_ms']:.0f} ms) | {r['mean_delay']:.2f} ({lo}–{hi}) "
                     f"| {_fmt(w['success'], pct=True)} | {_fmt(w['seam_discontinuity'])} "
                     f"| {_fmt(w['steps_to_success'], digits=1)} |")
        for name in ("virtual", "replay"):
            if name not in r:
                continue
            v, ok = r[name], r[f"{name}_agrees"]
            lines.append(f"| | {labels[name]} | | {_fmt(v['success'], pct=True)}{mark[ok['success']]} "
                         f"| {_fmt(v['seam_discontinuity'])}{mark[ok['seam_discontinuity']]} "
                         f"| {_fmt(v['steps_to_success'], digits=1)}{mark[ok['steps_to_success']]} |")
    return "\n".join(lines)


def run(cfg: ClocksConfig) -> list[dict[str, Any]]:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", asdict(cfg) | {"env": {"type": cfg.env.type, **asdict(cfg.env)}})
    rows = []
    for ms in cfg.latencies:
        wall_path, virt_path = out / f"wall_{ms:g}.json", out / f"virtual_{ms:g}.json"
        if wall_path.is_file():
            wall = json.loads(wall_path.read_text())
        else:
            wall = run_wall(cfg, ms)
            atomic_write_json(wall_path, wall)
        if virt_path.is_file():
            virtual = json.loads(virt_path.read_text())
        else:
            virtual = run_virtual(cfg, ms, wall)
            atomic_write_json(virt_path, virtual)
        replay_path = out / f"replay_{ms:g}.json"
        if replay_path.is_file():
            replay = json.loads(replay_path.read_text())
        else:
            replay = run_virtual(cfg, ms, wall, replay=True)
            atomic_write_json(replay_path, replay)
        rows.append(compare(wall, virtual, replay))
    what = cfg.policy_path or "scripted expert (served on the state)"
    title = (f"{cfg.env.task}, {what}, strategy {cfg.strategy}, H={cfg.actions_per_chunk}, "
             f"g={cfg.chunk_size_threshold}, {cfg.n_episodes} episodes per cell, fps {cfg.env.fps:g} x{cfg.time_scale:g}")
    table = format_rows(rows, title)
    atomic_write_text(out / "table.md", table + "\n")
    atomic_write_json(out / "results.json", {"config": asdict(cfg) | {"env": asdict(cfg.env)}, "rows": rows})
    print(table)
    return rows


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_cli(ClocksConfig, argv, "bench clocks")
    except CLIError:
        return 2
    try:
        run(cfg)
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        print(f"chunkwise bench clocks: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
