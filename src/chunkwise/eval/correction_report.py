"""Success / seams / steps vs delay from per-cell sweep dirs, and the long-delay targets.

    python -m chunkwise.eval.correction_report --out=docs/delay_push \\
        outputs/delay/cells/flow_push outputs/delay/cells/oracle_push:_oracle

Each argument is a directory of per-cell sweep outputs (``<strategy>_d<d>/results.json``,
as ``outputs/delay/cells.sh`` writes them; resumable, one cell per run); ``dir:suffix``
renames that directory's strategies. Writes ``<out>.md`` (success with 95 % CIs, steps to
success, seams, episode counts, target check) and ``<out>.png``. Targets, per strategy
against its own d = 0 success: kept >= 95 % at d = 4, >= 90 % at d = 8, >= 80 % at d = 16;
seam discontinuity at d = 4 at least 30 % below latest_only's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from chunkwise.eval.flow_report import merge, seam_change, seam_table, write_report
from chunkwise.eval.report import flat_row, format_table

KEEP_TARGETS = {4: 0.95, 8: 0.90, 16: 0.80}
SEAM_CUT = 0.30


def cell_files(spec: str) -> list[str]:
    path, _, suffix = spec.partition(":")
    files = sorted(Path(path).glob("*/results.json"), key=lambda p: int(p.parent.name.rsplit("_d", 1)[1]))
    return [f"{f}{':' + suffix if suffix else ''}" for f in files]


def target_table(rows: list[dict[str, Any]]) -> str:
    flats = {(f["task"], f["strategy"], f["delay"]): f for f in map(flat_row, rows)}
    head = ["| task | strategy | n/cell | d=0 | " + " | ".join(f"kept d={d} (≥{t:.0%})" for d, t in KEEP_TARGETS.items())
            + f" | seam d=4 vs latest_only (≤ -{SEAM_CUT:.0%}) |", "|---" * (5 + len(KEEP_TARGETS)) + "|"]
    lines = []
    for task in dict.fromkeys(k[0] for k in flats):
        for s in dict.fromkeys(k[1] for k in flats if k[0] == task):
            if (task, s, 0) not in flats or s.startswith("sync"):
                continue
            s0 = flats[(task, s, 0)]["success_rate"]
            cells = []
            for d, t in KEEP_TARGETS.items():
                f = flats.get((task, s, d))
                if f is None or not s0:
                    cells.append("–")
                    continue
                keep = f["success_rate"] / s0
                cells.append(f"{keep:.0%} {'✓' if keep >= t else '✗'}")
            base = flats.get((task, "latest_only", 4))  # the learned checkpoint's latest_only
            f4 = flats.get((task, s, 4))
            change = seam_change(f4["seam_discontinuity"] if f4 else None, base["seam_discontinuity"] if base else None)
            seam = "–" if change != change else f"{change:+.0%} {'✓' if change <= -SEAM_CUT else '✗'}"
            n = flats[(task, s, 0)]["n_episodes"]
            lines.append(f"| {task} | {s} | {n} | {s0:.2f} | " + " | ".join(cells) + f" | {seam} |")
    return "\n".join(head + lines)


def main(argv: list[str]) -> int:
    out = next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), None)
    specs = [a for a in argv if not a.startswith("--out=")]
    if not out or not specs:
        print(__doc__, file=sys.stderr)
        return 2
    files = [f for s in specs for f in cell_files(s)]
    rows = sorted(merge(files), key=lambda r: (r["task"], r["delay"]))
    text = "\n\n".join([format_table(rows, ci=True), seam_table(rows), target_table(rows)]) + "\n"
    write_report(out, text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
