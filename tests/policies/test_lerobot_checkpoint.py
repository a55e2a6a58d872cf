"""A LeRobot checkpoint is recognised without lerobot (core venv): a hand-written fake dir."""

import json

import pytest

from chunkwise.policies.lerobot.files import is_lerobot_checkpoint


def _fake_lerobot_dir(path):
    """What LeRobot's save_pretrained writes for ACT (files only; the contents are not read)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "type": "act", "n_obs_steps": 1, "chunk_size": 10, "n_action_steps": 10,
        "input_features": {"observation.state": {"type": "STATE", "shape": [39]}},
        "output_features": {"action": {"type": "ACTION", "shape": [4]}},
        "device": "cpu", "pretrained_backbone_weights": None,
    }))
    for name in ("model.safetensors", "policy_preprocessor_step_3_normalizer_processor.safetensors",
                 "policy_postprocessor_step_0_unnormalizer_processor.safetensors"):
        (path / name).write_bytes(b"")
    (path / "policy_preprocessor.json").write_text(json.dumps({"name": "policy_preprocessor", "steps": []}))
    (path / "policy_postprocessor.json").write_text(json.dumps({"name": "policy_postprocessor", "steps": []}))
    return path


def test_lerobot_dir_is_recognised_and_chunkwise_dir_is_not(tmp_path):
    lr = _fake_lerobot_dir(tmp_path / "lr")
    assert is_lerobot_checkpoint(lr)
    cw = tmp_path / "cw"
    cw.mkdir()
    (cw / "config.json").write_text(json.dumps({"type": "act", "format_version": 1, "config": {}, "metadata": {}}))
    (cw / "stats.safetensors").write_bytes(b"")
    assert not is_lerobot_checkpoint(cw)
    assert not is_lerobot_checkpoint(tmp_path / "missing")


def test_chunkwise_act_loader_names_lerobot_and_the_flag(tmp_path):
    pytest.importorskip("torch")
    from chunkwise.policies.act.policy import ACTPolicy, _load

    lr = _fake_lerobot_dir(tmp_path / "lr")
    for call in (lambda: _load(lr), lambda: ACTPolicy.from_pretrained(lr)):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg
        assert "is a LeRobot checkpoint" in msg and "--policy.type=lerobot" in msg and ".[lerobot]" in msg


def test_registry_routes_a_lerobot_dir_to_the_lerobot_family(tmp_path):
    from chunkwise.policies.registry import checkpoint_type, get_family

    lr = _fake_lerobot_dir(tmp_path / "run" / "checkpoints" / "last" / "pretrained_model")
    assert checkpoint_type(lr) == "lerobot"
    assert checkpoint_type(tmp_path / "run") == "lerobot"  # a lerobot-train output dir
    assert get_family("lerobot").loader == "chunkwise.policies.lerobot.policy"


def test_without_lerobot_loading_gives_one_line_naming_the_extra(tmp_path):
    try:
        import lerobot  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("lerobot is installed here")
    from chunkwise.policies import load

    with pytest.raises(ValueError) as err:
        load(_fake_lerobot_dir(tmp_path / "lr"))
    msg = str(err.value)
    assert "\n" not in msg and "pip install -e '.[lerobot]'" in msg and "Python >= 3.12" in msg


def test_core_never_imports_lerobot():
    import subprocess
    import sys

    code = ("import sys, chunkwise.policies.registry as r; r.families(); "
            "import chunkwise.policies.lerobot; print('lerobot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
