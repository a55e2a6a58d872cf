"""`python -m chunkwise.data.expert_eval`: --tasks=a,b like `chunkwise sweep`, and --help text."""

from __future__ import annotations

import draccus
import pytest

from chunkwise.data import expert_eval


@pytest.mark.parametrize("flag", ["--tasks=reach-v3,drawer-close-v3", "--tasks=reach-v3, drawer-close-v3",
                                  "--tasks=[reach-v3,drawer-close-v3]"])
def test_tasks_flag_is_comma_separated(flag):
    cfg = draccus.parse(expert_eval.ExpertEvalConfig, args=[flag])
    assert cfg.task_list == ["reach-v3", "drawer-close-v3"]


def test_python_callers_may_pass_a_list():
    assert expert_eval.ExpertEvalConfig(tasks=["push-v3"]).task_list == ["push-v3"]


def test_empty_task_list_is_an_error():
    with pytest.raises(ValueError, match="--tasks is empty"):
        expert_eval.split_tasks(" , ")


def test_main_runs_the_listed_tasks(capsys):
    assert expert_eval.main(["--tasks=reach-v3,drawer-close-v3", "--n_episodes=1"]) == 0
    out = capsys.readouterr().out
    assert "| reach-v3 | 1 | 1 | 100% |" in out and "| drawer-close-v3 | 1 | 1 | 100% |" in out


@pytest.mark.parametrize("argv,match", [(["--tasks=reach-v9"], "unknown MetaWorld task 'reach-v9'"),
                                        (["--tasks=push-v3,push-v3"], "duplicates"),
                                        (["--n_episodes=0"], "n_episodes must be positive")])
def test_bad_flags_are_one_clear_error(argv, match, capsys):
    assert expert_eval.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m chunkwise.data.expert_eval: error: ") and match in err and "Traceback" not in err


def test_help_has_text_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        expert_eval.main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "comma-separated MetaWorld v3 task names (default: reach-v3,push-v3," in out
    assert "(default: 50)" in out and "(default: 0)" in out and "(default: 500)" in out
