"""RTC over the network: a served flow checkpoint gets the queued prefix, through a real
`chunkwise serve` process, from RemotePolicy and from `chunkwise eval --server` (with a token)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chunkwise.clients.remote_policy import RemotePolicy  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402
from chunkwise.types import Prefix  # noqa: E402

TOKEN = "0123-secret"


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory, metaworld_info):
    from chunkwise.policies.flow.config import FlowConfig

    info = metaworld_info("push-v3")
    torch.manual_seed(0)
    cfg = FlowConfig(chunk_size=10, n_action_steps=5, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                     delta_n_blocks=1, rtc_max_delay=6, rtc_training=True, delta_expert=True, action_context_length=3)
    path = tmp_path_factory.mktemp("ckpt") / "flow"
    cfg.make_policy(info).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def flow_server(flow_checkpoint):
    with ServerProcess([f"--policy.path={flow_checkpoint}", f"--token={TOKEN}"], lifetime_s=180) as srv:
        yield srv


def test_served_flow_checkpoint_offers_its_prefix_modes_and_uses_the_prefix(flow_server):
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.standard_normal((1, 39)).astype(np.float32), "task": ["push-v3"]}
    queued = rng.uniform(-0.5, 0.5, (8, 4)).astype(np.float32)
    with RemotePolicy(flow_server.address, token=TOKEN) as rp:
        md = rp.metadata
        assert md.prefix_length is None
        assert dict(md.prefix_modes) == {"rtc_guided": 0, "rtc_trained": 0, "delta_expert": 3}
        trained = rp.with_prefix_mode("rtc_trained")
        assert trained.metadata.prefix_length == 0
        out = trained.predict_chunk(obs, prefix=[Prefix(queued, delay=3)])[0]
        # training-time RTC freezes the first d actions to the prefix: the server got it
        np.testing.assert_allclose(out[:3], queued[:3], atol=1e-5)
        assert not np.allclose(out[3:8], queued[3:], atol=1e-3)
        plain = rp.predict_chunk(obs, prefix=[Prefix(queued, delay=3)])[0]
        assert not np.allclose(plain[:3], queued[:3], atol=1e-3)  # served as is: no prefix
        with pytest.raises(ValueError, match="offers prefix modes"):
            rp.with_prefix_mode("oracle")


def test_chunkwise_eval_server_rtc_trained_with_token(flow_server, tmp_path, capsys):
    from chunkwise.eval.run import main

    args = [f"--server={flow_server.address}", "--env.task=push-v3", "--env.max_episode_steps=60", "--n_episodes=1",
            "--strategy=rtc_trained", "--actions_per_chunk=10", "--time_scale=2", f"--output_dir={tmp_path}"]
    assert main(args) == 2  # no token: a one-line error naming the flag
    err = capsys.readouterr().err
    assert "--token" in err and "Traceback" not in err
    assert main(args + [f"--token={TOKEN}"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["config"]["token"] == "***"
    assert result["execution"]["aggregate_fn_name"] == "latest_only"
    assert result["remote"]["policy"]["prefix_length"] == 0 and result["remote"]["errors"] == 0
    assert result["episodes"][0]["steps"] == 60 and result["episodes"][0]["inferences"] >= 6


def test_a_strategy_the_served_policy_cannot_run_is_refused_before_the_first_episode(flow_server, capsys):
    from chunkwise.eval.run import main

    base = [f"--server={flow_server.address}", f"--token={TOKEN}", "--env.task=push-v3", "--n_episodes=1",
            "--actions_per_chunk=10"]
    assert main(base + ["--strategy=oracle_prefix"]) == 2
    assert "cannot run against a server" in capsys.readouterr().err


def test_unreachable_server_is_named_within_seconds(capsys):
    import socket
    import time

    from chunkwise.eval.run import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert main([f"--server=127.0.0.1:{port}", "--connect_timeout_s=1", "--n_episodes=1"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "cannot reach" in err and time.monotonic() - t0 < 10


def test_rtc_strategy_against_a_policy_without_prefix_modes_names_modes_and_fix(capsys):
    from chunkwise.eval.run import main

    with ServerProcess(["--policy.type=echo", "--policy.state_dim=39", "--policy.action_dim=4", "--policy.fps=80",
                        "--policy.chunk_size=10"], lifetime_s=60) as srv:
        assert main([f"--server={srv.address}", "--env.task=push-v3", "--n_episodes=1", "--strategy=rtc_trained"]) == 2
    err = capsys.readouterr().err.strip()
    assert "strategy 'rtc_trained' needs a policy with prefix mode 'rtc_trained'" in err
    assert "this echo policy offers: none" in err and "--policy.rtc_training=true" in err
    assert len(err.splitlines()) == 1


def test_chunkwise_eval_server_with_a_correction_head(flow_server, tmp_path):
    """``delta_expert+correction`` against the real server process: the chunk comes from the
    server, the head runs in the client on every executed step. This head's residual is +10
    everywhere, so every corrected action clips to [1, 1, 1, 1]: no seam, no change inside a chunk."""
    from chunkwise.eval.run import main
    from chunkwise.policies.correction.head import CorrectionConfig, CorrectionHead

    head = CorrectionHead.init(CorrectionConfig(state_dim=39, action_dim=4, hidden=[8], horizon=10), seed=3)
    w, b = head.layers[-1]
    head.layers[-1] = (np.zeros_like(w), np.zeros_like(b))
    head.y_mean = np.full(4, 10.0, np.float32)
    head.save(tmp_path / "head")
    runs = {}
    for strategy in ("delta_expert", "delta_expert+correction"):
        out = tmp_path / strategy
        assert main([f"--server={flow_server.address}", f"--token={TOKEN}", "--env.task=push-v3",
                     "--env.max_episode_steps=40", "--n_episodes=1", f"--strategy={strategy}",
                     "--actions_per_chunk=10", "--time_scale=2", f"--output_dir={out}",
                     *([f"--correction.path={tmp_path / 'head'}"] if strategy.endswith("+correction") else [])]) == 0
        runs[strategy] = json.loads((out / "eval.json").read_text())["episodes"][0]
    for ep in runs.values():
        assert ep["steps"] == 40 and ep["inferences"] >= 4
    corrected, base = runs["delta_expert+correction"], runs["delta_expert"]
    assert corrected["seam_discontinuity"] == 0 and corrected["inside_discontinuity"] == 0
    assert base["seam_discontinuity"] > 0 and base["inside_discontinuity"] > 0
