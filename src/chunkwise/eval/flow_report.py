"""Merge ``chunkwise sweep`` results of flow checkpoints and check the issue's targets.

    python -m chunkwise.eval.flow_report --out=docs/flow_sweep \
        outputs/sweep_a/results.json outputs/sweep_b/results.json[:suffix] ...

Rows of the same (task, strategy, delay) from several files (e.g. two seed batches) are
pooled episode by episode; ``file:suffix`` renames that file's strategies to
``<strategy><suffix>`` (a second checkpoint). Writes ``<out>.md`` (table + target check)
and ``<out>.png`` (the sweep plot). Targets: the best prefix-aware strategy keeps
>= 90% of its delay-0 success at d = 4, and cuts seam discontinuity by >= 30% against
latest_only: a seam change of -30% or less (a cut is a negative change, as in docs/flow.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chunkwise.eval.metrics import EpisodeMetrics, summarize
from chunkwise.eval.report import flat_row, format_table, plot

PREFIX_AWARE = ("rtc_guided", "rtc_trained", "delta_expert")


def merge(paths: list[str]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for spec in paths:
        path, _, suffix = spec.partition(":")
        for row in json.loads(Path(path).read_text())["rows"]:
            key = (row["task"], row["strategy"] + suffix, int(row["delay"]))
            cells.setdefault(key, []).extend(row["episodes"])
    rows = []
    for (task, strategy, delay), eps in cells.items():
        metrics = [EpisodeMetrics(**e) for e in eps]
        rows.append({"task": task, "strategy": strategy, "delay": delay, "summary": summarize(metrics),
                     "episodes": eps})
    return rows


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def seam_table(rows: list[dict[str, Any]]) -> str:
    """Seam discontinuity |a_t - a_(t-1)| at chunk switches (inside-chunk value in brackets)."""
    flats = {(f["task"], f["strategy"], f["delay"]): f for f in map(flat_row, rows)}
    out = []
    for task in dict.fromkeys(k[0] for k in flats):
        delays = sorted({k[2] for k in flats if k[0] == task})
        out += [f"{task}  (seam |a_t - a_t-1| at chunk switches; inside-chunk in brackets)",
                "| strategy | " + " | ".join(f"d={d}" for d in delays) + " |", "|---" * (len(delays) + 1) + "|"]
        for s in dict.fromkeys(k[1] for k in flats if k[0] == task):
            cells = []
            for d in delays:
                f = flats.get((task, s, d))
                seam = None if f is None else f["seam_discontinuity"]
                inside = None if f is None else f["inside_discontinuity"]
                # inside is None when no two consecutive actions came from one chunk
                # (g = 1, d = 0: every step executes a new chunk's first action)
                cells.append("–" if seam is None else f"{seam:.3f} ({_fmt(inside)})")
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


SEAM_CUT_TARGET = 0.3  # the seam must shrink by at least 30% against latest_only


def seam_change(seam: float | None, base: float | None) -> float:
    """Relative change of the seam discontinuity against ``base``: a cut is negative
    (0.132 vs 0.350 -> -0.62, printed "-62%", as in docs/flow.md); NaN if undefined."""
    if seam is None or not base:
        return float("nan")
    return seam / base - 1.0


def target_check(rows: list[dict[str, Any]], d_check: int = 4) -> str:
    flats = {(f["task"], f["strategy"], f["delay"]): f for f in map(flat_row, rows)}
    lines = []
    for task in dict.fromkeys(k[0] for k in flats):
        base = flats.get((task, "latest_only", d_check))
        for s in dict.fromkeys(k[1] for k in flats if k[0] == task):
            if not s.startswith(PREFIX_AWARE) or (task, s, 0) not in flats or (task, s, d_check) not in flats:
                continue
            s0, sd = flats[(task, s, 0)]["success_rate"], flats[(task, s, d_check)]["success_rate"]
            keep = (sd / s0) if s0 else float("nan")
            seam = flats[(task, s, d_check)]["seam_discontinuity"]
            change = seam_change(seam, base["seam_discontinuity"] if base else None)
            lines.append(
                f"| {task} | {s} | {s0:.2f} | {sd:.2f} | {keep:.0%} {'✓' if keep >= 0.9 else '✗'} "
                f"| {change:+.0%} {'✓' if change <= -SEAM_CUT_TARGET else '✗'} |"
            )
    head = [f"| task | strategy | success d=0 | success d={d_check} | kept (target ≥ 90%) "
            f"| seam change vs latest_only at d={d_check} (target ≤ -{SEAM_CUT_TARGET:.0%}) |",
            "|---|---|---|---|---|---|"]
    return "\n".join(head + lines)


def main(argv: list[str]) -> int:
    out = None
    paths = []
    for a in argv:
        if a.startswith("--out="):
            out = a.split("=", 1)[1]
        else:
            paths.append(a)
    if not out or not paths:
        print(__doc__, file=sys.stderr)
        return 2
    rows = merge(paths)
    text = format_table(rows) + "\n\n" + seam_table(rows) + "\n" + target_check(rows) + "\n"
    write_report(out, text, rows)
    return 0


def write_report(out: str, text: str, rows: list[dict]) -> None:
    """``<out>.md`` (the tables) and ``<out>.png`` (the plot); the tables are also printed."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".md").write_text(text)
    plot(rows, out + ".png")
    print(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
