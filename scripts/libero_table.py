"""Success vs delay table from the per-cell sweep results (ACT: sweep_<suite>_<T>/, flow:
sweep_flow_<suite>_<T>/), success counted within LeRobot's 280-step limit (libero_spatial and
libero_object; cells run with a 520-step limit are truncated after the fact: an episode's first
280 steps do not depend on the limit). Writes docs/libero_sweep.csv, prints the markdown table of docs/libero.md.

    .venv/bin/python scripts/libero_table.py
"""
import csv
import glob
import io
import json
import re

from chunkwise.common.files import atomic_write_text
from chunkwise.eval.metrics import wilson_interval

LIMIT = 280
rows = []
for f in sorted(glob.glob("outputs/libero/sweep_*libero_*_*/*/results.json")):
    m = re.search(r"sweep_(flow[a-z0-9]*_)?(libero_[a-z]+)_(\d+)/", f)
    policy = m.group(1)[:-1] if m.group(1) else "act"
    d = json.load(open(f))
    for r in d["rows"]:
        eps = r["episodes"]
        ok = [e for e in eps if e["success"] and e["steps_to_success"] <= LIMIT]
        n, k = len(eps), len(ok)
        lo, hi = wilson_interval(k, n)
        seam = [e["seam_discontinuity"] for e in eps if e["seam_discontinuity"] is not None]
        rows.append(dict(suite=r["task"], task_id=int(m.group(3)), policy=policy, strategy=r["strategy"], delay=r["delay"],
                         n_episodes=n, successes=k, success_rate=k / n, ci_low=lo, ci_high=hi,
                         steps_to_success=sum(e["steps_to_success"] for e in ok) / k if k else "",
                         seam_discontinuity=sum(seam) / len(seam) if seam else ""))
order = {"sync": 0, "latest_only": 1, "temporal_ensemble": 2, "rtc_trained": 3, "delta_expert": 4}
rows.sort(key=lambda r: (r["suite"], r["task_id"], r["policy"], r["delay"], order[r["strategy"]]))
buf = io.StringIO(newline="")
w = csv.DictWriter(buf, list(rows[0]))
w.writeheader()
w.writerows(rows)
atomic_write_text("docs/libero_sweep.csv", buf.getvalue())
print("| suite | task id | policy | delay d | strategy | episodes | successes | success [95% CI] | mean steps to success | seam \\|a_t-a_t-1\\| |")
print("|---|---:|---|---:|---|---:|---:|---|---:|---:|")
for r in rows:
    sts = f"{r['steps_to_success']:.1f}" if r["steps_to_success"] != "" else "-"
    seam = f"{r['seam_discontinuity']:.3f}" if r["seam_discontinuity"] != "" else "-"
    print(f"| {r['suite']} | {r['task_id']} | {r['policy'].upper() if r['policy']=='act' else r['policy']} | {r['delay']} | {r['strategy']} | {r['n_episodes']} | {r['successes']} | "
          f"{100*r['success_rate']:.0f}% [{100*r['ci_low']:.0f}, {100*r['ci_high']:.0f}] | {sts} | {seam} |")
