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
    # the shorter seed-1 run stops at 5k, so no variant has all its seeds at 10k
    assert "| task | variant | seeds | 0 | 5k | change vs init |" in text
    assert "| reach-v3, dense reward | act+chunk | 2 | 20 [10, 30] | 60 [50, 70] | +40 pts at 5k |" in text
    assert "| reach-v3, dense reward | mlp+chunk | 1 | 20 [20, 20] | 20 [20, 20] | +0 pts at 5k |" in text
    longer = seed_table(runs + [_run("first_action", 0, {0: 0.2, 5000: 0.4, 10000: 0.6})])
    assert "| reach-v3, dense reward | mlp+chunk | 1 | 20 [20, 20] | 20 [20, 20] | – | +0 pts at 5k |" in longer
    assert "| task | variant | seeds | 5k | change vs init |" in seed_table(runs, at=[5000])


def _write_run(root, actor: str, chunk_size: int, seed: int, curve: dict[int, float], memory: str = "state"):
    import json

    run = root / f"{actor}_{memory}_h{chunk_size}_s{seed}"
    (run / "checkpoints" / "last").mkdir(parents=True)
    cfg = {"config": {"actor": actor, "critic": "chunk", "chunk_size": chunk_size, "seed": seed,
                      "actor_net": {"memory": memory}, "target_entropy_per_dim": -0.5, "env": {"task": "reach-v3"}, "reward_type": "dense"}}
    (run / "checkpoints" / "last" / "config.json").write_text(json.dumps(cfg))
    rows = [{"kind": "eval", "env_steps": k, "success_rate": v} for k, v in curve.items()]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run


def test_main_labels_chunk_size_and_classic_sac_and_writes_png(tmp_path, capsys):
    from chunkwise.rl.report import main

    runs = [_write_run(tmp_path, "act", 5, s, {0: 0.3, 5000: 0.5 + 0.1 * s, 10000: 1.0}) for s in range(2)]
    runs.append(_write_run(tmp_path, "mlp", 1, 0, {0: 0.2, 5000: 0.1}))
    runs.append(_write_run(tmp_path, "act", 5, 0, {0: 0.4, 5000: 0.9}, memory="state_and_features"))
    out = tmp_path / "curves.png"
    assert main([str(r) for r in runs] + ["--out", str(out), "--until", "5000"]) == 0
    text = capsys.readouterr().out
    assert "| reach-v3, dense reward | act+chunk H=5 | 2 | 30 [30, 30] | 55 [50, 60] | +25 pts at 5k |" in text
    assert "mlp+chunk H=1 (classic SAC) (seed 0)" in text
    assert "10k" not in text and "| act+chunk H=5 (seed 0) | 5000 |" in text  # --until drops the 10k evaluation
    assert "| reach-v3, dense reward | act[features]+chunk H=5 | 1 | 40 [40, 40] | 90 [90, 90] | +50 pts at 5k |" in text
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_run_label_names_ibrl_and_the_ensemble_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from chunkwise.rl.report import load_run

    ck = tmp_path / "checkpoints" / "last"
    ck.mkdir(parents=True)
    cfg = {"actor": "act", "critic": "chunk", "chunk_size": 5, "seed": 2, "reward_type": "dense",
           "reference_policy": "bc", "critic_net": {"n_critics": 5}, "actor_net": {}, "env": {"task": "push-v3"}}
    (ck / "config.json").write_text(json.dumps({"config": cfg}))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "env_steps": 0, "success_rate": 0.5}) + "\n")
    run = load_run(tmp_path)
    assert run["variant"] == "act+chunk H=5 IBRL 5 critics" and run["label"].endswith("(seed 2)")
    cfg.update(reference_policy="none", critic_net={}, obs_std_floor=0.1, env={"task": "push-v3", "action_repeat": 2})
    (ck / "config.json").write_text(json.dumps({"config": cfg}))
    assert load_run(tmp_path)["variant"] == "act+chunk H=5 std floor 0.1, action repeat 2"


def test_saved_curves_stand_in_for_the_run_directories(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from chunkwise.rl.report import main

    runs = [_write_run(tmp_path, "act", 5, s, {0: 0.0, 5000: 0.2 + 0.2 * s}) for s in range(2)]
    curves = tmp_path / "docs" / "curves.json"
    assert main([str(r) for r in runs] + ["--out", str(tmp_path / "a.png"), "--save_curves", str(curves)]) == 0
    from_dirs = capsys.readouterr().out
    import shutil

    for r in runs:  # the run directories are gone; the curves file alone regenerates the tables
        shutil.rmtree(r)
    extra = _write_run(tmp_path, "mlp", 1, 0, {0: 0.1, 5000: 0.3})
    assert main([str(curves), str(extra), "--out", str(tmp_path / "b.png")]) == 0
    from_file = capsys.readouterr().out
    row = "| reach-v3, dense reward | act+chunk H=5 | 2 | 0 [0, 0] | 30 [20, 40] | +30 pts at 5k |"
    assert row in from_dirs and row in from_file
    assert "mlp+chunk H=1 (classic SAC) (seed 0)" in from_file
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": []}')
    with pytest.raises(SystemExit):
        main([str(bad)])
    assert "is not a curves file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    assert "neither a run directory" in capsys.readouterr().err
