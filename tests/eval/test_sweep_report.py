"""`chunkwise sweep` output: plot colours and legend, CI table, config block, progress flag,
and the check of every (task, strategy, policy) cell before the first episode."""

from __future__ import annotations

import json
import re

import pytest
from matplotlib.colors import to_hex

from chunkwise.eval import report
from chunkwise.eval import rollouts
from chunkwise.eval import sweep as eval_sweep
from chunkwise.eval.metrics import EpisodeMetrics, summarize


def _episode(seed: int, success: bool, seam: float | None) -> EpisodeMetrics:
    return EpisodeMetrics(seed=seed, success=success, episode_return=1.0, steps=60,
                          steps_to_success=60 if success else None, stall_steps=0, inferences=6,
                          n_seams=0 if seam is None else 5, seam_discontinuity=seam, inside_discontinuity=0.1,
                          jerk=0.1, mean_queue_len=5.0)


def _row(task: str, strategy: str, delay: int, n_ok: int, n: int, seam: float | None) -> dict:
    eps = [_episode(k, k < n_ok, seam) for k in range(n)]
    return {"task": task, "strategy": strategy, "delay": delay, "summary": summarize(eps),
            "episodes": [e.to_dict() for e in eps]}


def _handle_color(h) -> str:
    line = h.lines[0] if hasattr(h, "lines") else h  # ErrorbarContainer or Line2D
    return to_hex(line.get_color())


def _check_colours(fig, strategies: list[str]) -> dict[str, str]:
    """Every labelled line in every panel has its strategy's colour; the legend names all."""
    colour_of: dict[str, str] = {}
    seen_labels = set()
    for ax in fig.axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            c = _handle_color(h)
            assert colour_of.setdefault(label, c) == c, f"{label} changes colour between panels"
            seen_labels.add(label)
    assert seen_labels == set(strategies)
    assert len(set(colour_of.values())) == len(strategies), colour_of  # distinct colours
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == strategies
    for h, label in zip(legend.legend_handles, labels):
        assert to_hex(h.get_color()) == colour_of[label], label
    return colour_of


def test_plot_keeps_each_strategys_colour_where_another_has_no_data(tmp_path):
    # sync has no seam (None) in any cell; 'never' never succeeds (no steps to success),
    # and on task B the first strategy has no rows at all.
    rows = []
    for d in (2, 4):
        rows += [_row("A", "sync", d, 2, 2, None), _row("A", "latest_only", d, 2, 2, 0.3),
                 _row("A", "never", d, 0, 2, 0.5), _row("A", "oracle_prefix", d, 2, 2, 0.1)]
        rows += [_row("B", "latest_only", d, 1, 2, 0.2), _row("B", "oracle_prefix", d, 2, 2, 0.1)]
    fig = report.plot(rows, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 10_000
    strategies = ["sync", "latest_only", "never", "oracle_prefix"]
    colours = _check_colours(fig, strategies)
    assert colours == {s: to_hex(c) for s, c in report.strategy_colors(strategies).items()}
    # the seam panel of task A: no sync line, the others keep their colours
    seam_ax = fig.axes[2 * 2]  # row 2 (seam), column 0 (task A); axes are row-major
    assert seam_ax.get_ylabel().startswith("seam")
    labels = seam_ax.get_legend_handles_labels()[1]
    assert labels == ["latest_only", "never", "oracle_prefix"]


def test_ci_table_shows_wilson_interval():
    rows = [_row("push-v3", "sync", 0, 19, 20, 0.1), _row("push-v3", "sync", 4, 20, 20, 0.1),
            _row("push-v3", "latest_only", 0, 0, 20, 0.1)]
    text = report.format_table(rows, ci=True)
    assert "(success rate [Wilson 95% CI], %)" in text
    sync = [ln for ln in text.splitlines() if ln.startswith("| sync")]
    latest = [ln for ln in text.splitlines() if ln.startswith("| latest_only")]
    assert [c.strip() for c in sync[0].split("|")[2:4]] == ["95.0% ( 60.0)", "100.0% ( 60.0)"]
    # Wilson 95%: 19/20 -> [76, 99], 20/20 -> [84, 100], 0/20 -> [0, 16]
    assert [c.strip() for c in sync[1].split("|")[2:4]] == ["95% [76,99]", "100% [84,100]"]
    assert latest[1].split("|")[2].strip() == "0% [0,16]"
    assert latest[1].split("|")[3].strip() == ""  # no cell at d=4
    assert "Wilson" not in report.format_table(rows)  # the plain table is unchanged


def test_real_sweep_records_tasks_colours_and_ci(tmp_path, monkeypatch, capsys):
    """The reported case: coffee-push-v3 (not the default push-v3), sync has no seams."""
    figs = []
    monkeypatch.setattr(eval_sweep, "plot", lambda rows, path: figs.append(report.plot(rows, path)))
    strategies = ["sync", "latest_only", "oracle_prefix"]
    rc = eval_sweep.main(["--tasks=coffee-push-v3", "--delays=2", f"--strategies={','.join(strategies)}",
                          "--n_episodes=1", "--n_workers=1", "--env.max_episode_steps=40",
                          f"--output_dir={tmp_path}"])
    assert rc == 0
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert config["env"]["task"] == ["coffee-push-v3"] and config["tasks"] == ["coffee-push-v3"]
    assert config["delays"] == [2] and config["strategies"] == strategies
    assert "push-v3" not in json.dumps(config).replace("coffee-push-v3", "")
    (fig,) = figs
    _check_colours(fig, strategies)
    seam_labels = fig.axes[2].get_legend_handles_labels()[1]
    assert seam_labels == ["latest_only", "oracle_prefix"]  # sync has no seam
    captured = capsys.readouterr()
    assert "coffee-push-v3  (success rate [Wilson 95% CI], %)" in captured.out
    assert re.search(r"\| sync +\| +\d+% \[\d+,\d+\]", captured.out)
    assert "Wilson 95% CI" in (tmp_path / "table.md").read_text()
    assert "sweep:" not in captured.err  # stderr is not a terminal under capsys: no bar


_TINY = ["--tasks=drawer-close-v3", "--delays=0", "--strategies=latest_only", "--n_episodes=1",
         "--n_workers=1", "--env.max_episode_steps=10", "--plot=false"]


@pytest.mark.parametrize("flag,tty,bar", [(None, False, False), (None, True, True), ("true", False, True),
                                          ("false", True, False)])
def test_progress_flag_defaults_to_stderr_being_a_terminal(flag, tty, bar, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    argv = _TINY + [f"--output_dir={tmp_path}"] + ([f"--progress={flag}"] if flag else [])
    assert eval_sweep.main(argv) == 0
    err = capsys.readouterr().err
    assert ("sweep:" in err and "1/1" in err) == bar, err


def _no_episodes(monkeypatch) -> list:
    ran = []

    def spy(job):
        ran.append(job)
        raise AssertionError("an episode ran before every cell was checked")

    monkeypatch.setattr(rollouts, "run_job", spy)
    return ran


def _one_line_error(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ": warning: " not in ln]
    err = "\n".join(lines) + "\n"
    assert len(lines) == 1 and lines[0].startswith("chunkwise sweep: error: "), err
    assert "Traceback" not in err
    return err


def test_scripted_policy_with_a_flow_strategy_fails_before_any_cell(tmp_path, monkeypatch, capsys):
    ran = _no_episodes(monkeypatch)
    rc = eval_sweep.main(["--tasks=drawer-close-v3,push-v3", "--delays=0,2", "--strategies=latest_only,rtc_trained",
                          "--n_episodes=1", "--n_workers=1", f"--output_dir={tmp_path / 'out'}"])
    assert rc == 2 and ran == []
    err = _one_line_error(capsys)
    assert "strategy 'rtc_trained' cannot run with --policy.type=scripted" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory, metaworld_info):
    """An untrained flow checkpoint shaped for MetaWorld (39-d state, 4-d action, 80 fps),
    trained neither with rtc_training nor a delta expert."""
    import torch

    from chunkwise.policies.flow.config import FlowConfig

    info = metaworld_info("drawer-close-v3", action_std=1.0)
    torch.manual_seed(0)
    cfg = FlowConfig(chunk_size=8, n_action_steps=4, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                     delta_n_blocks=1, rtc_max_delay=4)
    path = tmp_path_factory.mktemp("flow") / "ck"
    cfg.make_policy(info).save_pretrained(path)
    return path


@pytest.mark.parametrize("bad", ["rtc_trained", "oracle_prefix", "delta_expert"])
def test_checkpoint_with_an_incompatible_strategy_fails_before_any_cell(bad, flow_checkpoint, tmp_path,
                                                                        monkeypatch, capsys):
    ran = _no_episodes(monkeypatch)
    rc = eval_sweep.main([f"--policy.path={flow_checkpoint}", "--tasks=drawer-close-v3,push-v3", "--delays=0,4",
                          f"--strategies=sync,latest_only,rtc_guided,{bad}", "--actions_per_chunk=8",
                          "--n_episodes=1", "--n_workers=1", f"--output_dir={tmp_path / 'out'}"])
    assert rc == 2 and ran == []
    err = _one_line_error(capsys)
    assert f"strategy {bad!r} cannot run with --policy.path={flow_checkpoint}" in err
    assert not (tmp_path / "out").exists()


def test_check_cells_accepts_what_the_checkpoint_can_run(flow_checkpoint):
    cfg = eval_sweep.SweepConfig(policy=rollouts.PolicySource(path=str(flow_checkpoint)),
                                 tasks="drawer-close-v3,push-v3", delays="0", actions_per_chunk=8,
                                 strategies="sync,async,latest_only,rtc_guided")
    eval_sweep.check_cells(cfg)  # no error
    with pytest.raises(ValueError, match="actions_per_chunk=20 > chunk_size=8"):
        eval_sweep.check_cells(eval_sweep.SweepConfig(policy=cfg.policy, tasks="push-v3", actions_per_chunk=20,
                                                      strategies="latest_only"))
