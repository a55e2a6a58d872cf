"""rl.report: seeds of one variant pooled into mean and spread at shared eval steps."""

from __future__ import annotations

from chunkwise.rl.report import seed_table


def _run(variant: str, seed: int, curve: dict[int, float]) -> dict:
    return {"label": f"{variant} (seed {seed})", "variant": variant, "task": "reach-v3, dense reward",
            "evals": [{"env_steps": k, "success_rate": v} for k, v in curve.items()], "dir": ""}


def test_seed_table_mean_spread_and_change():
    runs = [_run("act+chunk", 0, {0: 0.3, 5000: 0.5, 10000: 1.0}),
            _run("act+chunk", 1, {0: 0.1, 5000: 0.7}),  # shorter run: only shared steps are pooled
            _run("mlp+chunk", 0, {0: 0.2, 5000: 0.2})]
    text = seed_table(runs)
    assert "| reach-v3, dense reward | act+chunk | 2 | 5000 | 60% [50, 70] | +40 pts |" in text
    assert "| act+chunk | 2 | 10000 |" not in text
    assert "| reach-v3, dense reward | mlp+chunk | 1 | 5000 | 20% [20, 20] | +0 pts |" in text
    assert "| 0 |" not in seed_table(runs, at=[5000])
