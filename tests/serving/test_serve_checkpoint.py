"""`chunkwise serve --policy.path=<ACT checkpoint>` returns what the checkpoint computes locally."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chunkwise.clients.remote_policy import RemotePolicy  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402
from chunkwise.types import FeatureSpec, stack_observations  # noqa: E402


@pytest.fixture(scope="module")
def act_checkpoint(tmp_path_factory):
    from chunkwise.policies.act.config import ACTConfig
    from chunkwise.policies.common.trainable import DatasetInfo

    info = DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((39,), "float32")}, action_dim=4, fps=80.0,
        stats={"observation.state": {"mean": np.zeros(39, np.float32), "std": np.ones(39, np.float32)},
               "action": {"mean": np.zeros(4, np.float32), "std": np.full(4, 0.5, np.float32)}},
        task="push-v3",
    )
    torch.manual_seed(0)
    cfg = ACTConfig(chunk_size=8, n_action_steps=4, dim_model=32, dim_feedforward=64, n_heads=2, latent_dim=8,
                    n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1)
    policy = cfg.make_policy(info)
    path = tmp_path_factory.mktemp("ckpt") / "act"
    policy.save_pretrained(path)
    return path


def test_served_checkpoint_matches_local_inference(act_checkpoint):
    from chunkwise.policies import load

    local = load(act_checkpoint)
    rng = np.random.default_rng(0)
    obs = [{"observation.state": rng.standard_normal(39).astype(np.float32), "task": "push-v3"} for _ in range(3)]
    with ServerProcess([f"--policy.path={act_checkpoint}"], lifetime_s=60) as srv:
        assert "policy=act chunk_size=8" in srv.output[0]
        with RemotePolicy(srv.address) as remote:
            assert remote.metadata == local.metadata
            for o in obs:
                np.testing.assert_allclose(remote.predict_chunk(stack_observations([o])),
                                           local.predict_chunk(stack_observations([o])), rtol=1e-5, atol=1e-6)
            batch = stack_observations(obs)  # 3 sessions, batched by the server
            np.testing.assert_allclose(remote.predict_chunk(batch), local.predict_chunk(batch), rtol=1e-5, atol=1e-6)


def test_serve_rejects_bad_policy_paths(tmp_path):
    from chunkwise.serving.server import ServeConfig, ServePolicyConfig

    with pytest.raises(ValueError, match="is not a directory"):
        ServePolicyConfig(path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="exactly one"):
        ServeConfig(policy=ServePolicyConfig(path=str(tmp_path), type="echo"))


def test_a_checkpoint_family_type_is_checked_against_the_directory(act_checkpoint, capsys):
    from chunkwise.serving.server import main, parse_serve_config

    cfg = parse_serve_config([f"--policy.path={act_checkpoint}", "--policy.type=act", "--port=0"])
    assert cfg.policy.type == "act"
    assert main([f"--policy.path={act_checkpoint}", "--policy.type=lerobot", "--port=0"]) == 2
    assert "holds a 'act' checkpoint, not --policy.type=lerobot" in capsys.readouterr().err
    assert main(["--policy.type=flow", "--port=0"]) == 2
    assert "give --policy.path=<its directory>" in capsys.readouterr().err
