"""Sweep results -> CSV rows, a console table, and a PNG plot."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

CSV_FIELDS = [
    "task", "strategy", "delay", "n_episodes", "success_rate", "success_ci_low", "success_ci_high",
    "steps_to_success", "steps_to_success_ci_low", "steps_to_success_ci_high", "episode_return",
    "stall_steps", "inferences", "seam_discontinuity", "inside_discontinuity", "jerk", "mean_queue_len",
]


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    s = row["summary"]
    out = {
        "task": row["task"], "strategy": row["strategy"], "delay": row["delay"],
        "n_episodes": s["n_episodes"], "success_rate": s["success_rate"],
        "success_ci_low": s["success_ci_low"], "success_ci_high": s["success_ci_high"],
        "steps_to_success": s["steps_to_success"]["mean"],
        "steps_to_success_ci_low": s["steps_to_success"]["ci_low"],
        "steps_to_success_ci_high": s["steps_to_success"]["ci_high"],
    }
    for k in ("episode_return", "stall_steps", "inferences", "seam_discontinuity", "inside_discontinuity",
              "jerk", "mean_queue_len"):
        out[k] = s[k]["mean"]
    return out


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = flat_row(r)
        w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in flat.items()})
    return buf.getvalue()


def _cell(flat: dict[str, Any]) -> str:
    sr = flat["success_rate"]
    steps = flat["steps_to_success"]
    return f"{100 * sr:5.1f}% ({steps:5.1f})" if steps is not None else f"{100 * sr:5.1f}% (  -  )"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per task: strategies x delays, cells 'success% (mean steps to success)'."""
    flats = [flat_row(r) for r in rows]
    tasks = list(dict.fromkeys(f["task"] for f in flats))
    strategies = list(dict.fromkeys(f["strategy"] for f in flats))
    delays = sorted({f["delay"] for f in flats})
    by_key = {(f["task"], f["strategy"], f["delay"]): f for f in flats}
    width = max(len(s) for s in strategies + ["strategy"])
    lines = []
    for task in tasks:
        n = next(f["n_episodes"] for f in flats if f["task"] == task)
        lines.append(f"{task}  (success rate, mean steps to success; {n} episodes per cell)")
        lines.append(f"| {'strategy':<{width}} | " + " | ".join(f"{'d=' + str(d):<14}" for d in delays) + " |")
        lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * 16 for _ in delays) + "|")
        for s in strategies:
            cells = [_cell(by_key[(task, s, d)]) if (task, s, d) in by_key else "" for d in delays]
            lines.append(f"| {s:<{width}} | " + " | ".join(f"{c:<14}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    """Rows: success rate (Wilson CI bars), steps to success, seam discontinuity; columns: tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flats = [flat_row(r) for r in rows]
    tasks = list(dict.fromkeys(f["task"] for f in flats))
    strategies = list(dict.fromkeys(f["strategy"] for f in flats))
    panels = [
        ("success_rate", "success rate"),
        ("steps_to_success", "steps to success\n(successful episodes)"),
        ("seam_discontinuity", "seam ||a_t - a_t-1||"),
    ]
    # A single-task figure would be too narrow for the title and legend: keep a minimum width.
    width = max(4.2 * len(tasks), 7.5)
    fig, axes = plt.subplots(len(panels), len(tasks), figsize=(width, 3.2 * len(panels)), squeeze=False)
    for j, task in enumerate(tasks):
        for i, (key, label) in enumerate(panels):
            ax = axes[i][j]
            for k, s in enumerate(strategies):
                pts = sorted((f["delay"], f) for f in flats if f["task"] == task and f["strategy"] == s)
                xs = [d for d, f in pts if f[key] is not None]
                ys = [f[key] for d, f in pts if f[key] is not None]
                if not xs:
                    continue
                style = {"marker": "o", "markersize": 3, "label": s, "linestyle": "--" if s == "sync" else "-"}
                # small x offsets so overlapping lines stay visible
                xo = [x + (k - (len(strategies) - 1) / 2) * 0.06 for x in xs]
                if key == "success_rate":
                    lo = [f[key] - f["success_ci_low"] for d, f in pts if f[key] is not None]
                    hi = [f["success_ci_high"] - f[key] for d, f in pts if f[key] is not None]
                    ax.errorbar(xo, ys, yerr=[lo, hi], capsize=2, elinewidth=0.7, **style)
                    ax.set_ylim(-0.03, 1.03)
                else:
                    ax.plot(xo, ys, **style)
            if i == 0:
                ax.set_title(task)
            if j == 0:
                ax.set_ylabel(label)
            if i == len(panels) - 1:
                ax.set_xlabel("inference delay d (control steps)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(len(labels), max(3, int(width // 1.6)))
    legend_rows = -(-len(labels) // ncol) if labels else 0
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("success rate (Wilson 95% CI), steps to success, seam discontinuity vs inference delay", fontsize=10)
    fig.tight_layout(rect=(0, 0.025 * legend_rows + 0.01, 1, 0.97))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def combine(result_dirs: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of several sweep output dirs, in first-seen order.

    Dirs may split a sweep by task and/or by seeds (e.g. ``--seed=0 --n_episodes=30`` and
    ``--seed=30 --n_episodes=20``): episodes of the same (task, strategy, delay) cell are
    concatenated and the cell is summarized again. Duplicate seeds in a cell are an error.
    """
    import json
    from pathlib import Path

    from chunkwise.eval.metrics import EpisodeMetrics, summarize

    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for d in result_dirs:
        for row in json.loads((Path(d) / "results.json").read_text())["rows"]:
            key = (row["task"], row["strategy"], int(row["delay"]))
            cells.setdefault(key, []).extend(row["episodes"])
    rows = []
    for (task, strategy, delay), eps in cells.items():
        seeds = [e["seed"] for e in eps]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"cell {task}/{strategy}/d={delay} has duplicate episode seeds across inputs")
        eps = sorted(eps, key=lambda e: e["seed"])
        rows.append({"task": task, "strategy": strategy, "delay": delay,
                     "summary": summarize([EpisodeMetrics(**e) for e in eps]), "episodes": eps})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m chunkwise.eval.report OUT_DIR IN_DIR [IN_DIR ...]``: merge sweeps (e.g. run
    per task) into OUT_DIR/results.csv, table.md and sweep.png, and print the table."""
    import sys
    from pathlib import Path

    from chunkwise.eval.common import atomic_write_json, atomic_write_text

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    out, inputs = Path(args[0]), args[1:]
    rows = combine(inputs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", {"inputs": inputs, "rows": rows})
    atomic_write_text(out / "results.csv", to_csv(rows))
    atomic_write_text(out / "table.md", format_table(rows))
    tmp = out / ".sweep.tmp.png"
    plot(rows, str(tmp))
    tmp.replace(out / "sweep.png")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
