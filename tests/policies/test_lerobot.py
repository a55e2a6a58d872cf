"""``--policy.type=lerobot`` against the real lerobot (runs in .venv-lerobot; skips elsewhere).

Random-init LeRobot policies saved with ``save_pretrained`` (nothing downloads:
``pretrained_backbone_weights=None``): chunkwise's Policy gives LeRobot's own chunk; served by a
real ``chunkwise serve`` subprocess to two concurrent clients; evaluated and swept on the
virtual clock; and the user's workflow (``chunkwise collect`` -> ``lerobot-train`` -> serve ->
``chunkwise eval --server``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import typing
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")
torch = pytest.importorskip("torch")

from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies import get_policy_class, make_pre_post_processors  # noqa: E402
from lerobot.policies.utils import prepare_observation_for_inference  # noqa: E402

from chunkwise.clients.remote_policy import RemotePolicy  # noqa: E402
from chunkwise.policies import load  # noqa: E402
from chunkwise.policies.lerobot.policy import LeRobotPolicy  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402
from chunkwise.types import stack_observations  # noqa: E402

S, A = 39, 4  # MetaWorld's state and action sizes
CAM = "observation.images.corner2"
IMG = 32
BIN = Path(sys.executable).parent
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _stats(features: dict) -> dict:
    g = torch.Generator().manual_seed(1)
    out = {}
    for key, feat in features.items():
        shape = feat.shape
        if feat.type is FeatureType.VISUAL:
            shape = (shape[0], 1, 1)
        out[key] = {"mean": torch.rand(shape, generator=g) * 0.2, "std": torch.rand(shape, generator=g) + 0.5,
                    "min": -torch.ones(shape) * 2, "max": torch.ones(shape) * 2}
    return out


def _save(path: Path, cfg) -> Path:
    torch.manual_seed(0)
    policy = get_policy_class(cfg.type)(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=_stats({**cfg.input_features, **cfg.output_features}))
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)
    return path


ACTION = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(A,))}
STATE = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(S,)),
         "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(S,))}
SMALL_ACT = dict(device="cpu", pretrained_backbone_weights=None, chunk_size=10, n_action_steps=10, dim_model=32,
                 dim_feedforward=64, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, latent_dim=8)


@pytest.fixture(scope="module")
def act_dir(tmp_path_factory) -> Path:
    """ACT on the state and the environment state (fed from observation.state by default)."""
    from lerobot.policies import ACTConfig

    cfg = ACTConfig(input_features=dict(STATE), output_features=dict(ACTION), **SMALL_ACT)
    return _save(tmp_path_factory.mktemp("lerobot") / "act", cfg)


@pytest.fixture(scope="module")
def act_image_dir(tmp_path_factory) -> Path:
    """ACT on the state and one small camera image (random-init resnet18)."""
    from lerobot.policies import ACTConfig

    feats = {"observation.state": STATE["observation.state"],
             CAM: PolicyFeature(type=FeatureType.VISUAL, shape=(3, IMG, IMG))}
    cfg = ACTConfig(input_features=feats, output_features=dict(ACTION), **SMALL_ACT)
    return _save(tmp_path_factory.mktemp("lerobot") / "act_image", cfg)


@pytest.fixture(scope="module")
def diffusion_dir(tmp_path_factory) -> Path:
    from lerobot.policies import DiffusionConfig

    cfg = DiffusionConfig(input_features=dict(STATE), output_features=dict(ACTION), device="cpu",
                          pretrained_backbone_weights=None, n_obs_steps=2, horizon=16, n_action_steps=8,
                          down_dims=(32, 64), diffusion_step_embed_dim=32, n_groups=8, num_train_timesteps=20,
                          num_inference_steps=4)
    return _save(tmp_path_factory.mktemp("lerobot") / "diffusion", cfg)


def _lerobot_reference(path: Path):
    """LeRobot's own loading path, independent of chunkwise."""
    from lerobot.configs.policies import PreTrainedConfig

    cfg = PreTrainedConfig.from_pretrained(path)
    policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(path))
    return policy, pre, post


def _observations(n: int, image: bool = False, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        o = {"observation.state": rng.standard_normal(S).astype(np.float32), "task": "push-v3"}
        if image:
            o[CAM] = rng.integers(0, 256, (IMG, IMG, 3), dtype=np.uint8)
        out.append(o)
    return out


def test_metadata_comes_from_the_lerobot_config(act_dir, act_image_dir, diffusion_dir):
    act = load(act_dir)
    assert isinstance(act, LeRobotPolicy)
    md = act.metadata
    assert (md.policy_type, md.action_dim, md.chunk_size) == ("lerobot", A, 10)
    assert set(md.observation_spec) == {"observation.state"}  # environment_state is fed from it
    assert md.extra["lerobot_type"] == "act"
    img = load(act_image_dir).metadata
    assert img.observation_spec[CAM].shape == (IMG, IMG, 3) and img.observation_spec[CAM].dtype == "uint8"
    diff = load(diffusion_dir).metadata
    assert (diff.chunk_size, diff.extra["lerobot_type"], diff.extra["n_obs_steps"]) == (8, "diffusion", 2)


@pytest.mark.parametrize("which", ["act", "act_image"])
def test_act_chunk_equals_lerobot_predict_action_chunk(which, act_dir, act_image_dir):
    path = {"act": act_dir, "act_image": act_image_dir}[which]
    image = which == "act_image"
    ours = load(path)
    policy, pre, post = _lerobot_reference(path)
    obs = _observations(3, image=image)
    got = ours.predict_chunk(stack_observations(obs))
    assert got.shape == (3, 10, A) and got.dtype == np.float32
    for i, o in enumerate(obs):  # LeRobot's inference path: one robot observation at a time
        raw = {"observation.state": o["observation.state"].copy()}
        if image:
            raw[CAM] = o[CAM].copy()
        else:
            raw["observation.environment_state"] = o["observation.state"].copy()
        batch = pre(prepare_observation_for_inference(raw, torch.device("cpu"), task="push-v3"))
        with torch.no_grad():
            want = post(policy.predict_action_chunk(batch)).numpy()[0]
        np.testing.assert_allclose(got[i], want, atol=1e-5, rtol=0)


def test_diffusion_chunk_equals_lerobot_first_step(diffusion_dir):
    """A stateless call sees the observation repeated n_obs_steps times, as LeRobot's
    select_action does on an episode's first step; same noise (same seed), same chunk."""
    ours = load(diffusion_dir)
    policy, pre, post = _lerobot_reference(diffusion_dir)
    obs = _observations(3, seed=1)
    torch.manual_seed(123)
    got = ours.predict_chunk(stack_observations(obs))
    assert got.shape == (3, 8, A)
    state = torch.from_numpy(np.stack([o["observation.state"] for o in obs]))
    batch = pre({"observation.state": state, "observation.environment_state": state.clone(), "task": ["push-v3"] * 3})
    policy.reset()
    torch.manual_seed(123)
    with torch.no_grad():
        first = policy.select_action(batch)
        rest = list(policy._queues["action"])
    want = post(torch.stack([first, *rest], dim=1)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_key_map_feeds_policy_features_from_other_env_keys(act_dir, monkeypatch):
    monkeypatch.setenv("CHUNKWISE_LEROBOT_KEYS", "my.state=observation.state,my.env=observation.environment_state")
    ours = load(act_dir)
    assert set(ours.metadata.observation_spec) == {"my.state", "my.env"}
    s = _observations(2)
    mapped = {"my.state": np.stack([o["observation.state"] for o in s]), "my.env": np.stack([o["observation.state"] for o in s])}
    monkeypatch.delenv("CHUNKWISE_LEROBOT_KEYS")
    np.testing.assert_allclose(ours.predict_chunk(mapped), load(act_dir).predict_chunk(stack_observations(s)), atol=1e-6)
    with pytest.raises(ValueError, match="does not read"):
        LeRobotPolicy(act_dir, key_map={"observation.state": "observation.nope"})


def _serve_flags(path: Path) -> list[list[str]]:
    """``--policy.path`` (the directory is recognised), and ``--policy.type=lerobot`` once serve takes it."""
    from chunkwise.serving.server import ServePolicyConfig

    flags = [[f"--policy.path={path}"]]
    if "lerobot" in typing.get_args(typing.get_type_hints(ServePolicyConfig)["type"]):
        flags.append(["--policy.type=lerobot", f"--policy.path={path}"])
    return flags


def test_serve_two_concurrent_clients(act_dir, diffusion_dir):
    local = load(act_dir)
    obs = _observations(6, seed=2)
    want = [local.predict_chunk(stack_observations([o]))[0] for o in obs]
    for flags in _serve_flags(act_dir):
        with ServerProcess(flags, lifetime_s=120, env=ENV) as srv:
            assert "policy=lerobot chunk_size=10 action_dim=4" in srv.output[-1] or any(
                "policy=lerobot chunk_size=10 action_dim=4" in line for line in srv.output)
            got: dict[int, np.ndarray] = {}
            errors: list[BaseException] = []

            def client(k: int) -> None:
                try:
                    with RemotePolicy(srv.address) as remote:
                        assert remote.metadata.policy_type == "lerobot"
                        for _rep in range(3):
                            for i in range(k, len(obs), 2):
                                got[i] = remote.predict_chunk(stack_observations([obs[i]]))[0]
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    errors.append(e)

            threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            for i in range(len(obs)):
                np.testing.assert_allclose(got[i], want[i], atol=1e-5, rtol=0)
    with ServerProcess([f"--policy.path={diffusion_dir}"], lifetime_s=120, env=ENV) as srv:
        outs: list[np.ndarray] = []

        def diff_client(k: int) -> None:
            with RemotePolicy(srv.address) as remote:
                for o in _observations(3, seed=10 + k):
                    outs.append(remote.predict_chunk(stack_observations([o])))

        threads = [threading.Thread(target=diff_client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(outs) == 6
        for c in outs:  # clip_sample keeps normalized actions in [-1, 1] -> [min, max] = [-2, 2]
            assert c.shape == (1, 8, A) and np.all(np.isfinite(c)) and np.all(np.abs(c) <= 2 + 1e-5)


def test_openpi_endpoint_serves_a_lerobot_policy(act_dir):
    """The same server's openpi websocket port (openpi's LIBERO keys map onto the policy's)."""
    pytest.importorskip("websockets")
    import re

    from chunkwise.serving.openpi_client import OpenpiWebsocketClient

    local = load(act_dir)
    obs = _observations(2, seed=4)
    with ServerProcess([f"--policy.path={act_dir}", "--openpi_port=0"], lifetime_s=120, env=ENV) as srv:
        line = next(x for x in srv.output if "listening on" in x)
        port = int(re.search(r"openpi=ws://\S+:(\d+)", line).group(1))
        with OpenpiWebsocketClient("127.0.0.1", port) as c:
            assert c.metadata["chunk_size"] == 10 and c.metadata["action_dim"] == A
            for o in obs:
                out = c.infer({"observation/state": o["observation.state"].astype(np.float64), "prompt": "push-v3"})
                np.testing.assert_allclose(out["actions"], local.predict_chunk(stack_observations([o]))[0],
                                           atol=1e-5, rtol=0)


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-4000:]}"
    return out


def test_virtual_clock_eval_and_sweep_on_metaworld(act_dir, diffusion_dir, tmp_path):
    out = _run([str(BIN / "chunkwise"), "eval", "--policy.type=lerobot", f"--policy.path={act_dir}",
                "--env.type=metaworld", "--env.task=push-v3", "--env.max_episode_steps=30", "--n_episodes=1",
                "--strategy=latest_only", "--inference_delay=2"], tmp_path)
    assert "episodes           1" in out and "chunk delay        mean 2.0 steps" in out
    out = _run([str(BIN / "chunkwise"), "sweep", "--policy.type=lerobot", f"--policy.path={diffusion_dir}",
                "--env.type=metaworld", "--tasks=push-v3", "--env.max_episode_steps=24", "--delays=0,2",
                "--strategies=sync,latest_only", "--n_episodes=1", "--n_workers=1", "--actions_per_chunk=8",
                "--n_action_steps=4", f"--output_dir={tmp_path / 'sweep'}", "--plot=false"], tmp_path)
    assert (tmp_path / "sweep" / "results.json").is_file()
    assert "| sync" in out and "| latest_only" in out


@pytest.mark.skipif(shutil.which("lerobot-train", path=str(BIN)) is None, reason="lerobot-train is not installed")
def test_workflow_collect_lerobot_train_serve_eval(tmp_path):
    """What a user does: chunkwise collect -> lerobot-train -> chunkwise serve -> chunkwise eval --server."""
    _run([str(BIN / "chunkwise"), "collect", "--env.type=metaworld", "--env.task=push-v3", "--env.cameras=[corner2]",
          f"--env.image_size={IMG}", "--n_episodes=2", "--output_dir=data/push-v3", "--seed=0"], tmp_path)
    _run([str(BIN / "lerobot-train"), "--dataset.repo_id=local/push-v3", "--dataset.root=data/push-v3",
          "--policy.type=act", "--policy.device=cpu", "--policy.pretrained_backbone_weights=null",
          "--policy.push_to_hub=false", "--policy.chunk_size=10", "--policy.n_action_steps=10",
          "--policy.dim_model=32", "--policy.dim_feedforward=64", "--policy.n_heads=2",
          "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--steps=3", "--batch_size=4",
          "--num_workers=0", "--save_freq=3", "--log_freq=1", "--wandb.enable=false",
          "--output_dir=outputs/lr_act"], tmp_path, timeout=600)
    run_dir = tmp_path / "outputs" / "lr_act"  # the run dir: its newest checkpoint's pretrained_model/ loads
    policy = load(run_dir)
    assert policy.metadata.fps == 80.0  # from train_config.json -> the dataset's info.json
    assert set(policy.metadata.observation_spec) == {"observation.state", CAM}
    with ServerProcess([f"--policy.path={run_dir}"], lifetime_s=180, env=ENV) as srv:
        out = _run([str(BIN / "chunkwise"), "eval", f"--server={srv.address}", "--env.type=metaworld",
                    "--env.task=push-v3", "--env.cameras=[corner2]", f"--env.image_size={IMG}",
                    "--env.max_episode_steps=30", "--n_episodes=2", "--strategy=latest_only",
                    "--chunk_size_threshold=0.5"], tmp_path)
    assert "episodes           2" in out and "errors 0" in out
