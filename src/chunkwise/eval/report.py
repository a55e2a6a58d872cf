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


def _ci_cell(flat: dict[str, Any]) -> str:
    """'95% [76,99]': success rate and its Wilson 95% interval, in percent."""
    sr, lo, hi = (100 * flat[k] for k in ("success_rate", "success_ci_low", "success_ci_high"))
    return f"{sr:3.0f}% [{lo:.0f},{hi:.0f}]"


def _task_table(title: str, strategies: list[str], delays: list[int], cells: dict[tuple[str, int], str]) -> list[str]:
    width = max(len(s) for s in strategies + ["strategy"])
    lines = [title]
    lines.append(f"| {'strategy':<{width}} | " + " | ".join(f"{'d=' + str(d):<14}" for d in delays) + " |")
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * 16 for _ in delays) + "|")
    for s in strategies:
        row = [cells.get((s, d), "") for d in delays]
        lines.append(f"| {s:<{width}} | " + " | ".join(f"{c:<14}" for c in row) + " |")
    lines.append("")
    return lines


def format_table(rows: Sequence[dict[str, Any]], ci: bool = False) -> str:
    """Per task: strategies x delays, cells 'success% (mean steps to success)'.

    With ``ci`` each task gets a second table of the success rate with its Wilson 95%
    interval ('95% [76,99]'), so a difference can be read against the episode count.
    """
    flats = [flat_row(r) for r in rows]
    tasks = list(dict.fromkeys(f["task"] for f in flats))
    strategies = list(dict.fromkeys(f["strategy"] for f in flats))
    delays = sorted({f["delay"] for f in flats})
    lines = []
    for task in tasks:
        mine = [f for f in flats if f["task"] == task]
        n = mine[0]["n_episodes"]
        lines += _task_table(f"{task}  (success rate, mean steps to success; {n} episodes per cell)",
                             strategies, delays, {(f["strategy"], f["delay"]): _cell(f) for f in mine})
        if ci:
            lines += _task_table(f"{task}  (success rate [Wilson 95% CI], %)",
                                 strategies, delays, {(f["strategy"], f["delay"]): _ci_cell(f) for f in mine})
    return "\n".join(lines)


def strategy_colors(strategies: Sequence[str]) -> dict[str, Any]:
    """One fixed colour per strategy (its index in ``strategies``), the same in every panel."""
    import matplotlib
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", [])
    if len(strategies) <= len(cycle):
        return {s: cycle[k] for k, s in enumerate(strategies)}
    cmap = matplotlib.colormaps["tab20"]
    return {s: cmap(k % cmap.N) for k, s in enumerate(strategies)}


def plot(rows: Sequence[dict[str, Any]], path: str) -> Any:
    """Rows: success rate (Wilson CI bars), steps to success, seam discontinuity; columns: tasks.

    Each strategy keeps one colour (and x offset) in every panel, also where another
    strategy has no value (e.g. sync has no seams, or a strategy never succeeded), and the
    legend lists every strategy. Saves to ``path`` and returns the (closed) figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    flats = [flat_row(r) for r in rows]
    tasks = list(dict.fromkeys(f["task"] for f in flats))
    strategies = list(dict.fromkeys(f["strategy"] for f in flats))
    colors = strategy_colors(strategies)
    panels = [
        ("success_rate", "success rate"),
        ("steps_to_success", "steps to success\n(successful episodes)"),
        ("seam_discontinuity", "seam ||a_t - a_t-1||"),
    ]

    def style(s: str) -> dict[str, Any]:
        return {"marker": "o", "markersize": 3, "color": colors[s], "linestyle": "--" if s == "sync" else "-"}

    # A single-task figure would be too narrow for the title and legend: keep a minimum width.
    width = max(4.2 * len(tasks), 7.5)
    fig, axes = plt.subplots(len(panels), len(tasks), figsize=(width, 3.2 * len(panels)), squeeze=False)
    for j, task in enumerate(tasks):
        for i, (key, label) in enumerate(panels):
            ax = axes[i][j]
            for k, s in enumerate(strategies):
                pts = [(d, f) for d, f in sorted(((f["delay"], f) for f in flats
                                                  if f["task"] == task and f["strategy"] == s), key=lambda p: p[0])
                       if f[key] is not None]
                if not pts:
                    continue
                # small x offsets so overlapping lines stay visible
                xo = [d + (k - (len(strategies) - 1) / 2) * 0.06 for d, _ in pts]
                ys = [f[key] for _, f in pts]
                if key == "success_rate":
                    lo = [f[key] - f["success_ci_low"] for _, f in pts]
                    hi = [f["success_ci_high"] - f[key] for _, f in pts]
                    ax.errorbar(xo, ys, yerr=[lo, hi], capsize=2, elinewidth=0.7, label=s, **style(s))
                    ax.set_ylim(-0.03, 1.03)
                else:
                    ax.plot(xo, ys, label=s, **style(s))
            if i == 0:
                ax.set_title(task)
            if j == 0:
                ax.set_ylabel(label)
            if i == len(panels) - 1:
                ax.set_xlabel("inference delay d (control steps)")
            ax.grid(alpha=0.3)
    # The legend is built from the strategy list, not from one panel: a strategy with no
    # point in the first panel must still be named, with its own colour.
    handles = [Line2D([], [], **style(s)) for s in strategies]
    ncol = min(len(strategies), max(3, int(width // 1.6))) or 1
    legend_rows = -(-len(strategies) // ncol) if strategies else 0
    fig.legend(handles, strategies, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("success rate (Wilson 95% CI), steps to success, seam discontinuity vs inference delay", fontsize=10)
    fig.tight_layout(rect=(0, 0.025 * legend_rows + 0.01, 1, 0.97))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return fig


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
    atomic_write_text(out / "table.md", format_table(rows, ci=True))
    tmp = out / ".sweep.tmp.png"
    plot(rows, str(tmp))
    tmp.replace(out / "sweep.png")
    print(format_table(rows, ci=True))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
