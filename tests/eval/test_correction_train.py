"""The correction trainer's resumable rollouts: reused only when made with the same config."""

from __future__ import annotations

import json

from chunkwise.eval import correction_train


def _run(out, n_episodes, steps=5):
    args = ["--env.task=reach-v3", "--policy.type=scripted", "--policy.chunk_size=10", "--actions_per_chunk=10",
            "--delays=2", f"--n_episodes={n_episodes}", "--dagger_iters=2", "--max_steps=12", f"--steps={steps}",
            "--batch_size=8", "--hidden=8", f"--output_dir={out}"]
    assert correction_train.main(args) == 0
    return json.loads((out / "train_log.json").read_text())


def test_rollouts_are_reused_only_for_the_same_config(tmp_path):
    out = tmp_path / "head"
    first = _run(out, 1)
    assert [e["rows"] for e in first] == [10, 20]
    again = _run(out, 1, steps=6)  # a fit setting: iteration 0's rollouts are reused, 1's (new head) are not
    assert again[0]["collect_s"] < first[0]["collect_s"] and [e["rows"] for e in again] == [10, 20]
    more = _run(out, 2)  # more episodes: nothing may be reused (10 rows an episode: 12 steps, 2 stalled)
    assert [e["rows"] for e in more] == [20, 40]
