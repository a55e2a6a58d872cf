"""One registry of policy families: each registers in its own folder; --policy.type is a family."""

from __future__ import annotations

import sys

import pytest

from chunkwise.policies.registry import checkpoint_dir, families, get_family


def test_every_family_is_registered_from_its_own_folder():
    fams = families()
    assert {"act", "flow", "scripted", "echo", "mlp", "expert", "rl_sac"} <= set(fams)
    assert fams["flow"].strategy_names == ("rtc_guided", "rtc_trained", "delta_expert")
    assert fams["act"].config == "chunkwise.policies.act.config" and fams["rl_sac"].loader == "chunkwise.rl.policy"
    with pytest.raises(ValueError, match="unknown policy type 'nope'; valid: act, echo"):
        get_family("nope")


def test_listing_families_imports_no_torch():
    import subprocess

    code = "import sys; from chunkwise.policies import families; families(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_a_family_strategies_are_listed_without_importing_the_family():
    from chunkwise.eval.common import valid_strategy_names

    assert {"rtc_guided", "delta_expert", "oracle_prefix"} <= set(valid_strategy_names())


def _act_checkpoint(path, info):
    import torch

    from chunkwise.policies.act.config import ACTConfig

    torch.manual_seed(0)
    cfg = ACTConfig(chunk_size=8, n_action_steps=4, dim_model=32, dim_feedforward=64, n_heads=2, latent_dim=8,
                    n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1)
    cfg.make_policy(info).save_pretrained(path)
    return path


def test_policy_type_means_the_family_in_eval_and_a_run_dir_is_its_last_checkpoint(tmp_path, capsys, metaworld_info):
    from chunkwise.eval.run import main

    ckpt = _act_checkpoint(tmp_path / "run" / "checkpoints" / "step_1", metaworld_info("push-v3"))
    (tmp_path / "run" / "checkpoints" / "last").symlink_to("step_1")
    assert checkpoint_dir(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "last"
    base = ["--env.task=drawer-close-v3", "--env.max_episode_steps=10", "--n_episodes=1"]
    assert main([f"--policy.path={tmp_path / 'run'}", "--policy.type=act", *base]) == 0
    err = capsys.readouterr().err
    # trained on push-v3, evaluated on drawer-close-v3: said, not silent
    assert "was trained on push-v3, evaluating it on drawer-close-v3" in err
    assert main([f"--policy.path={ckpt}", "--policy.type=flow", *base]) == 2
    assert "is a 'act' checkpoint, not 'flow' (--policy.type)" in capsys.readouterr().err
    assert main(["--policy.type=echo", *base]) == 2
    assert "serve it (chunkwise serve --policy.type=echo)" in capsys.readouterr().err
