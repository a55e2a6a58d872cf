"""ACT policy: shapes, overfitting, checkpoints, action groups, compatibility checks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import chunkwise.policies
from chunkwise.policies.act.config import ACTConfig, validate_action_groups
from chunkwise.policies.act.policy import ACTPolicy
from chunkwise.policies.common.compat import IncompatiblePolicyError, check_compatible
from chunkwise.policies.common.normalize import Normalizer
from chunkwise.policies.common.trainable import DatasetInfo
from chunkwise.policies.registry import load
from chunkwise.types import FeatureSpec

S, A, H = 6, 4, 5
CAM = "observation.images.front"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_info(images: bool = False) -> DatasetInfo:
    spec = {"observation.state": FeatureSpec((S,), "float32")}
    if images:
        spec[CAM] = FeatureSpec((32, 32, 3), "uint8")
    rng = np.random.default_rng(0)
    stats = {
        "observation.state": {"mean": rng.normal(size=S).astype(np.float32), "std": np.full(S, 2.0, np.float32)},
        "action": {"mean": np.full(A, 0.5, np.float32), "std": np.full(A, 0.25, np.float32)},
    }
    return DatasetInfo(observation_spec=spec, action_dim=A, fps=80.0, stats=stats, task="push-v3")


def small_config(**kw) -> ACTConfig:
    base = dict(chunk_size=H, dim_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
                n_vae_encoder_layers=1, dim_feedforward=64, latent_dim=8, image_backbone_channels=[8, 16])
    base.update(kw)
    return ACTConfig(**base)


def batch(b: int, images: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {
        "observation.state": torch.randn(b, S, generator=g),
        "action": torch.rand(b, H, A, generator=g),
        "action_is_pad": torch.zeros(b, H, dtype=torch.bool),
    }
    out["action_is_pad"][0, -2:] = True
    if images:
        out[CAM] = torch.randint(0, 256, (b, 32, 32, 3), generator=g, dtype=torch.uint8)
    return out


@pytest.mark.parametrize("images", [False, True])
def test_forward_backward_shapes(images: bool) -> None:
    torch.manual_seed(0)
    policy = small_config(use_images=images).make_policy(make_info(images))
    loss, terms = policy.compute_loss(batch(3, images))
    assert loss.ndim == 0 and set(terms) == {"l1", "kl", "loss"}
    loss.backward()
    no_grad = [n for n, p in policy.named_parameters() if p.grad is None]
    assert no_grad == []  # every parameter (VAE encoder, backbone, heads) is trained
    obs = {k: v.numpy() for k, v in batch(2, images).items() if k.startswith("observation.")}
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (2, H, A) and chunk.dtype == np.float32
    meta = policy.metadata
    assert (meta.action_dim, meta.chunk_size, meta.policy_type, meta.fps) == (A, H, "act", 80.0)
    assert set(meta.observation_spec) == ({"observation.state", CAM} if images else {"observation.state"})


def test_predict_is_deterministic_and_unnormalized() -> None:
    policy = small_config().make_policy(make_info())
    obs = {"observation.state": np.zeros((1, S), np.float32)}
    a, b = policy.predict_chunk(obs), policy.predict_chunk(obs)
    np.testing.assert_array_equal(a, b)  # z = 0 and no dropout at inference
    policy.eval()
    normalized, _, _ = policy.model(policy.normalizer.normalize("observation.state", torch.zeros(1, S)))
    np.testing.assert_allclose(a, normalized.detach().numpy() * 0.25 + 0.5, rtol=1e-5, atol=1e-6)


def test_overfits_four_samples() -> None:
    torch.manual_seed(0)
    policy = small_config(dropout=0.0).make_policy(make_info())
    data = batch(4)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        loss, terms = policy.compute_loss(data)
        first = first or dict(terms)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert terms["loss"] < first["loss"] / 10, (first, terms)
    assert terms["l1"] < first["l1"] / 10, (first, terms)  # the action error itself, not just the KL


def test_save_load_identical_outputs(tmp_path) -> None:
    torch.manual_seed(1)
    policy = small_config(use_images=True, action_groups={"xyz": [0, 3], "grip": [3, 4]}).make_policy(make_info(True))
    obs = {k: v.numpy() for k, v in batch(2, True).items() if k.startswith("observation.")}
    policy.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["config.json", "model.safetensors", "stats.safetensors"]
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["type"] == "act" and cfg["config"]["action_groups"] == {"xyz": [0, 3], "grip": [3, 4]}
    assert "mean" not in json.dumps(cfg["config"])  # stats live in stats.safetensors, not the config
    loaded = load(tmp_path / "ckpt")
    assert isinstance(loaded, ACTPolicy)
    np.testing.assert_array_equal(policy.predict_chunk(obs), loaded.predict_chunk(obs))
    assert loaded.metadata == policy.metadata
    # saving again over an existing directory replaces it atomically
    loaded.save_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(chunkwise.policies.registry.load(tmp_path / "ckpt").predict_chunk(obs), policy.predict_chunk(obs))


def test_action_groups_each_head_writes_its_slice() -> None:
    torch.manual_seed(0)
    groups = {"gripper": [3, 4], "xyz": [0, 3]}
    policy = small_config(action_groups=groups).make_policy(make_info())
    heads = policy.model.heads
    assert {n: h.out_features for n, h in heads.items()} == {"xyz": 3, "gripper": 1}
    obs = {"observation.state": np.random.default_rng(0).normal(size=(2, S)).astype(np.float32)}
    before = policy.predict_chunk(obs)
    with torch.no_grad():
        heads["gripper"].bias += 1.0  # +1 in normalized units = +std (0.25) in action units
    after = policy.predict_chunk(obs)
    np.testing.assert_array_equal(after[..., :3], before[..., :3])
    np.testing.assert_allclose(after[..., 3] - before[..., 3], 0.25, atol=1e-5)


@pytest.mark.parametrize(
    "groups, action_dim, match",
    [
        ({"a": [0, 2], "b": [3, 4]}, 4, "belong to no action group"),
        ({"a": [0, 3], "b": [2, 4]}, 4, "overlaps"),
        ({"a": [0, 3]}, 4, "cover"),
        ({"a": [2, 2]}, None, "empty"),
        ({"a": [0]}, None, "must be"),
    ],
)
def test_bad_action_groups(groups, action_dim, match) -> None:
    with pytest.raises(ValueError, match=match):
        validate_action_groups(groups, action_dim)


def test_groups_must_cover_dataset_action() -> None:
    with pytest.raises(ValueError, match="action has 4 dims"):
        small_config(action_groups={"xyz": [0, 3]}).make_policy(make_info())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"n_action_steps": 9}, "n_action_steps"),
        ({"dim_model": 30}, "divisible"),
        ({"dropout": 1.5}, "dropout"),
        ({"kl_weight": -1}, "kl_weight"),
    ],
)
def test_config_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        small_config(**kwargs)


def test_use_images_without_cameras_is_an_error() -> None:
    with pytest.raises(ValueError, match="observation.images"):
        small_config(use_images=True).make_policy(make_info(False))


def test_missing_stats_and_batch_keys_are_named() -> None:
    info = make_info()
    del info.stats["action"]
    with pytest.raises(KeyError, match="'action'"):
        small_config().make_policy(info)
    policy = small_config().make_policy(make_info())
    b = batch(2)
    del b["action_is_pad"]
    with pytest.raises(KeyError, match="action_is_pad"):
        policy.compute_loss(b)
    with pytest.raises(KeyError, match="observation.state"):
        policy.predict_chunk({"observation.images.x": np.zeros((1, 8, 8, 3), np.uint8)})


def test_check_compatible_names_every_mismatch() -> None:
    meta = small_config().make_policy(make_info()).metadata
    ok = SimpleNamespace(action_dim=A, observation_spec={"observation.state": FeatureSpec((S,), "float32")}, task="t")
    check_compatible(meta, ok)
    bad = SimpleNamespace(action_dim=7, observation_spec={"observation.state": FeatureSpec((39,), "float32")}, task="t")
    with pytest.raises(IncompatiblePolicyError) as err:
        check_compatible(meta, bad)
    assert "action_dim: policy outputs 4, env expects 7" in str(err.value)
    assert "observation.state" in str(err.value) and "(39,)" in str(err.value)


def test_normalizer_round_trip_and_constant_dims() -> None:
    stats = {"x": {"mean": np.array([1.0, 2.0], np.float32), "std": np.array([2.0, 0.0], np.float32),
                   "min": np.array([0.0, 5.0], np.float32), "max": np.array([4.0, 5.0], np.float32)}}
    for mode in ("mean_std", "min_max"):
        norm = Normalizer(stats, {"x": mode})
        x = torch.tensor([[3.0, 7.0]])
        y = norm.normalize("x", x)
        assert torch.isfinite(y).all()  # a constant dim (std 0 / max == min) does not blow up
        torch.testing.assert_close(norm.unnormalize("x", y), x)
    assert Normalizer(stats, {"x": "mean_std"}).normalize("x", torch.tensor([[3.0, 7.0]])).tolist() == [[1.0, 5.0]]
    with pytest.raises(ValueError, match="mode"):
        Normalizer(stats, {"x": "zscore"})  # type: ignore[dict-item]


def test_forced_prefix_actions_get_no_loss() -> None:
    """A prefix branch's stale-plan actions (prefix_length, data/branches.py) are not the
    expert's: ACT is not supervised on them."""
    torch.manual_seed(0)
    policy = small_config(use_vae=False, dropout=0.0).make_policy(make_info())
    b = batch(4)
    b["prefix_length"] = torch.tensor([2, 0, 3, 0])
    changed = dict(b, action=b["action"].clone())
    changed["action"][0, :2] += 3.0
    changed["action"][2, :3] -= 3.0
    assert torch.equal(policy.compute_loss(b)[0], policy.compute_loss(changed)[0])
    changed["action"][1, 0] += 3.0  # an unforced step still counts
    assert not torch.equal(policy.compute_loss(b)[0], policy.compute_loss(changed)[0])
