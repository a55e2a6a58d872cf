"""Compare ``chunkwise rl`` runs: one learning-curve PNG and a markdown table.

    python -m chunkwise.rl.report outputs/rl_a outputs/rl_b --out=docs/rl_curve.png

Each run directory holds ``metrics.jsonl`` (``kind == "eval"`` rows) and
``checkpoints/last/config.json``; a run is labelled ``actor+critic H=h (seed s)``; H=1
with the ``mlp`` actor is classic SAC (one action per decision, one-step backup);
``act[features]`` is the act actor with ``actor_net.memory=state_and_features``; ``IBRL``
marks ``reference_policy=bc`` and ``N critics`` a non-default ensemble size. Runs of the
same task and variant are also pooled over seeds (``seed_table``): mean success at
each evaluation step the runs share, with the min–max over seeds, and the change from the
initialisation (the issue's "+25 points within N steps, mean and spread over 3 seeds").

``--save_curves=F.json`` writes the evaluation curves of every run given (label, variant,
task and the (env step, success) pairs) to one small JSON file, and such a file can stand
in for run directories on the command line. Run directories are large and do not outlive a
machine; a curves file kept beside the docs regenerates their tables and figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from chunkwise.common.files import atomic_write_text
from chunkwise.rl.config import ActorConfig, CriticConfig, SACConfig


def load_run(run: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    cfg = json.loads((run / "checkpoints" / "last" / "config.json").read_text())["config"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if not evals:
        raise ValueError(f"{run}/metrics.jsonl has no eval rows")
    actor = cfg["actor"]
    if actor == "act" and cfg.get("actor_net", {}).get("memory", ActorConfig.memory) != ActorConfig.memory:
        actor += "[features]"
    variant = f"{actor}+{cfg['critic']} H={cfg['chunk_size']}"
    entropy = cfg.get("target_entropy_per_dim", SACConfig.target_entropy_per_dim)
    if entropy != SACConfig.target_entropy_per_dim:
        variant += f" entropy {entropy:g}/dim"
    if cfg.get("reference_policy", "none") != "none":
        variant += " IBRL"
    n_critics = cfg.get("critic_net", {}).get("n_critics", CriticConfig.n_critics)
    if n_critics != CriticConfig.n_critics:
        variant += f" {n_critics} critics"
    floor = cfg.get("obs_std_floor", SACConfig.obs_std_floor)
    if floor != SACConfig.obs_std_floor:
        variant += f" std floor {floor:g}"
    if cfg["actor"] == "mlp" and cfg["chunk_size"] == 1:
        variant += " (classic SAC)"
    # held actions change the task (decisions per episode, MetaWorld steps per env step)
    repeat = cfg["env"].get("action_repeat", 1)
    if repeat != 1:
        variant += f", action repeat {repeat}"
    label = f"{variant} (seed {cfg['seed']})"
    title = f"{cfg['env']['task']}, {cfg.get('reward_type', '?')} reward"
    return {"label": label, "variant": variant, "task": title, "evals": evals, "dir": str(run)}


CURVES_FORMAT = "chunkwise.rl.curves/1"


def _point(e: dict[str, Any]) -> dict[str, Any]:
    """The part of an eval row a curves file keeps."""
    return {"env_steps": int(e["env_steps"]), "success_rate": float(e["success_rate"])}


def save_curves(runs: list[dict[str, Any]], out: Path) -> None:
    """Write the runs' curves to ``out`` atomically (see the module docstring)."""
    data = {"format": CURVES_FORMAT,
            "runs": [{"label": r["label"], "variant": r["variant"], "task": r["task"], "source": r["dir"],
                      "evals": [_point(e) for e in r["evals"]]} for r in runs]}
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")


def load_curves(path: Path) -> list[dict[str, Any]]:
    """The runs of a ``--save_curves`` file, in the form ``load_run`` returns."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a curves file: {e}") from e
    if not isinstance(data, dict) or data.get("format") != CURVES_FORMAT:
        raise ValueError(f"{path} is not a curves file (expected format {CURVES_FORMAT!r})")
    runs = []
    for i, r in enumerate(data["runs"]):
        missing = {"label", "variant", "task", "evals"} - set(r)
        if missing or not r["evals"]:
            raise ValueError(f"{path}: run {i} lacks {sorted(missing) or ['evals']}")
        evals = sorted((_point(e) for e in r["evals"]), key=lambda e: e["env_steps"])
        runs.append({"label": r["label"], "variant": r["variant"], "task": r["task"], "evals": evals,
                     "dir": r.get("source", str(path))})
    return runs


def load(path: Path) -> list[dict[str, Any]]:
    """A run directory (one run) or a curves file (its runs)."""
    if path.is_file() and path.suffix == ".json":
        return load_curves(path)
    if not (path / "metrics.jsonl").is_file():
        raise ValueError(f"{path} is neither a run directory (no metrics.jsonl) nor a curves .json file")
    return [load_run(path)]


def seed_table(runs: list[dict[str, Any]], at: list[int] | None = None) -> str:
    """Per (task, variant) a row: mean [min, max] success (%) over seeds at each evaluation
    step all of the variant's runs reached (or only the steps in ``at``), then the mean
    change from the initial evaluation at the last of those steps."""
    groups = _group(runs, lambda r: (r["task"], r["variant"]))
    shared = {key: {k: v for k, v in _shared_success(rs).items() if at is None or k in at}
              for key, rs in groups.items()}
    columns = sorted({k for cells in shared.values() for k in cells})
    head = "| task | variant | seeds | " + " | ".join(_steps_label(k) for k in columns) + " | change vs init |"
    lines = [head, "|" + "---|" * (len(columns) + 4)]
    for (task, variant), cells in shared.items():
        rs = groups[(task, variant)]
        init = sum(r["evals"][0]["success_rate"] for r in rs) / len(rs)
        row = [f"{100 * sum(v) / len(v):.0f} [{100 * min(v):.0f}, {100 * max(v):.0f}]" if (v := cells.get(k)) else "–"
               for k in columns]
        last = cells[max(cells)] if cells else None
        change = f"{100 * (sum(last) / len(last) - init):+.0f} pts at {_steps_label(max(cells))}" if last else "–"
        lines.append(f"| {task} | {variant} | {len(rs)} | " + " | ".join(row) + f" | {change} |")
    return "\n".join(lines)


def _group(runs: list[dict[str, Any]], key: Any) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def _shared_success(rs: list[dict[str, Any]]) -> dict[int, list[float]]:
    """{env step: [success of each run]} at the evaluation steps every run in ``rs`` reached."""
    per_run = [{e["env_steps"]: e["success_rate"] for e in r["evals"]} for r in rs]
    steps = sorted(set.intersection(*(set(m) for m in per_run)))
    return {k: [m[k] for m in per_run] for k in steps}


def _steps_label(k: int) -> str:
    return f"{k // 1000}k" if k and k % 1000 == 0 else str(k)


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| run | env steps | success @ init | best | final | change (final - init) |", "|---|---|---|---|---|---|"]
    for r in runs:
        ev = r["evals"]
        init, final = ev[0]["success_rate"], ev[-1]["success_rate"]
        best = max(e["success_rate"] for e in ev)
        lines.append(f"| {r['label']} | {ev[-1]['env_steps']} | {100 * init:.0f}% | {100 * best:.0f}% | "
                     f"{100 * final:.0f}% | {100 * (final - init):+.0f} pts |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    """One panel per task: per variant, the mean over seeds (thick line) inside its
    min-max band, and every seed as a thin line, so the spread is visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(7 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        variants = _group([r for r in runs if r["task"] == task], lambda r: r["variant"])
        for i, (variant, rs) in enumerate(variants.items()):
            color = f"C{i}"
            for r in rs:
                ax.plot([e["env_steps"] for e in r["evals"]], [100 * e["success_rate"] for e in r["evals"]],
                        color=color, alpha=0.35, lw=0.8)
            pooled = _shared_success(rs)
            steps = list(pooled)
            vals = [[100 * x for x in pooled[k]] for k in steps]
            ax.plot(steps, [sum(v) / len(v) for v in vals], color=color, lw=2.2, marker="o", ms=3,
                    label=f"{variant} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
            if len(rs) > 1:
                ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.15)
        ax.set_xlabel("environment steps (online)")
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(-5, 105)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories and/or --save_curves files")
    p.add_argument("--out", type=Path, default=Path("rl_curves.png"))
    p.add_argument("--at", type=str, default=None, help="comma-separated env steps for the seed table")
    p.add_argument("--until", type=int, default=None, help="drop evaluations after this many env steps")
    p.add_argument("--save_curves", type=Path, default=None, help="also write the runs' curves to this .json")
    args = p.parse_args(argv)
    try:
        runs = [run for path in args.runs for run in load(path)]
    except ValueError as e:
        p.error(str(e))
    if args.until is not None:
        for r in runs:
            r["evals"] = [e for e in r["evals"] if e["env_steps"] <= args.until]
    plot(runs, args.out)
    if args.save_curves is not None:
        save_curves(runs, args.save_curves)
    print(table(runs))
    print()
    print(seed_table(runs, [int(x) for x in args.at.split(",")] if args.at else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
