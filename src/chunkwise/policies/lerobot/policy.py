"""A LeRobot policy directory as a chunkwise ``Policy`` (``--policy.type=lerobot``).

Loads what ``save_pretrained`` / ``lerobot-train`` wrote: the policy class named by
``config.json``'s ``"type"`` with its safetensors weights, and the saved pre/post-processor
pipelines (normalisation statistics included). ``predict_chunk`` then does, for a batch::

    env observation (numpy)  --key map-->  policy input features (torch)
        uint8 (B, H, W, 3) images -> float32 (B, 3, H, W) in [0, 1]; float arrays as they are
    preprocessor -> policy.predict_action_chunk -> postprocessor -> (B, H, A) float32

Only this module imports lerobot (and only when a LeRobot checkpoint is loaded). Nothing is
unpickled: LeRobot's weights and processor states are safetensors, its configs JSON.

Key map: pairs ``env_key=policy_key``; an env key may feed more than one feature. The
default is the identity on the policy's input features, which is what MetaWorld and LIBERO
give (``observation.state``, ``observation.images.<cam>``; chunkwise-collected datasets use
the same names), except ``observation.environment_state``, which is fed from
``observation.state`` (chunkwise's envs have no separate one). Set it with ``LeRobotPolicy(path, key_map=...)`` or, for the CLI commands,
``$CHUNKWISE_LEROBOT_KEYS`` (e.g. ``observation.state=observation.environment_state``,
comma separated; pairs given replace the identity for their policy feature).
"""

from __future__ import annotations

import os
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from chunkwise.policies.lerobot.files import INSTALL_HINT, is_lerobot_checkpoint
from chunkwise.policies.registry import register_loader
from chunkwise.types import TASK, FeatureSpec, PolicyMetadata, Prefix

KEYS_ENV = "CHUNKWISE_LEROBOT_KEYS"
DEVICE_ENV = "CHUNKWISE_LEROBOT_DEVICE"
# chunkwise's envs (MetaWorld, LIBERO) give no separate environment state: their state vector
# (MetaWorld's holds the object poses) feeds it; every other feature is read under its own name
DEFAULT_SOURCES = {"observation.environment_state": "observation.state"}
DEFAULT_FPS = 30.0  # LeRobot configs carry no fps; a lerobot-train checkpoint's train_config.json does


class LeRobotMissingError(ValueError):
    """lerobot is not installed (a ValueError, so every command prints it as one line)."""


def _import_lerobot() -> Any:
    try:
        import lerobot  # noqa: F401
        from lerobot import policies
    except ImportError as err:
        raise LeRobotMissingError(
            f"--policy.type=lerobot needs the lerobot package ({err.name or err}): {INSTALL_HINT}"
        ) from None
    return policies


def parse_key_map(text: str) -> list[tuple[str, str]]:
    """``"a=b,c=d"`` -> [("a", "b"), ("c", "d")] (env key, policy feature)."""
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        env_key, sep, policy_key = item.partition("=")
        if not sep or not env_key.strip() or not policy_key.strip():
            raise ValueError(f"${KEYS_ENV}: {item!r} is not env_key=policy_key")
        pairs.append((env_key.strip(), policy_key.strip()))
    return pairs


def _fps_of(path: Path) -> float:
    """fps from a lerobot-train checkpoint's train_config.json (dataset metadata), else 30."""
    try:
        train = json.loads((path / "train_config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_FPS
    root = (train.get("dataset") or {}).get("root")
    if root:  # relative to where lerobot-train ran: try here and the run's parent directories
        bases = [Path.cwd(), *path.resolve().parents] if not Path(root).is_absolute() else [Path("/")]
        for base in bases:
            try:
                info = json.loads((base / root / "meta" / "info.json").read_text())
                return float(info.get("fps") or DEFAULT_FPS)
            except (OSError, ValueError):
                continue
    env = train.get("env") or {}
    return float(env.get("fps") or DEFAULT_FPS)


class LeRobotPolicy:
    """``LeRobotPolicy(path, key_map=None, device=None)``: see the module docstring."""

    policy_type = "lerobot"

    def __init__(
        self,
        path: str | Path,
        key_map: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        device: str | None = None,
        fps: float | None = None,
    ) -> None:
        lr_policies = _import_lerobot()
        import torch

        from chunkwise.policies.registry import checkpoint_dir

        try:  # a lerobot-train run or checkpoint dir -> its pretrained_model/
            self.path = checkpoint_dir(path)
        except FileNotFoundError:
            self.path = Path(path)
        if not is_lerobot_checkpoint(self.path):
            raise ValueError(
                f"{self.path} is not a LeRobot policy directory (needs config.json with \"type\" and "
                "policy_preprocessor.json / policy_postprocessor.json beside model.safetensors)"
            )
        from lerobot.configs.policies import PreTrainedConfig

        config = PreTrainedConfig.from_pretrained(self.path, local_files_only=True)
        device = device or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
        config.device = device
        cls = lr_policies.get_policy_class(config.type)
        self.model = cls.from_pretrained(self.path, config=config, local_files_only=True)
        self.model.to(device)
        self.model.eval()
        self.config = config
        self.device = torch.device(device)
        overrides = {"device_processor": {"device": device}}
        self.preprocessor, self.postprocessor = lr_policies.make_pre_post_processors(
            config,
            pretrained_path=str(self.path),
            preprocessor_overrides=overrides,
            postprocessor_overrides={"device_processor": {"device": "cpu"}},
        )
        self.lerobot_type = str(config.type)

        features = dict(config.input_features)
        if isinstance(key_map, Mapping):
            pairs = list(key_map.items())
        elif key_map is not None:
            pairs = list(key_map)
        else:
            pairs = parse_key_map(os.environ.get(KEYS_ENV, ""))
        mapped = {policy_key: env_key for env_key, policy_key in pairs}
        unknown = sorted(set(mapped) - set(features))
        if unknown:
            raise ValueError(f"key map names {unknown}, which this LeRobot policy does not read (it reads {sorted(features)})")
        # policy feature -> env key
        self.sources: dict[str, str] = {k: mapped.get(k, DEFAULT_SOURCES.get(k, k)) for k in features}
        self.image_features = [k for k, f in features.items() if _is_visual(f)]
        spec: dict[str, FeatureSpec] = {}
        for key, feat in features.items():
            shape = tuple(int(s) for s in feat.shape)
            env_key = self.sources[key]
            if key in self.image_features:
                if len(shape) != 3:
                    raise ValueError(f"{key}: LeRobot image feature of shape {shape}, expected (C, H, W)")
                env_spec = FeatureSpec((shape[1], shape[2], shape[0]), "uint8")
            else:
                env_spec = FeatureSpec(shape, "float32")
            if env_key in spec and spec[env_key] != env_spec:
                raise ValueError(f"key map feeds {env_key!r} to features of different shapes")
            spec[env_key] = env_spec
        action = config.output_features.get("action")
        if action is None:
            raise ValueError(f"{self.path}: LeRobot policy has no 'action' output feature")
        self.action_dim = int(np.prod(action.shape))
        self.n_obs_steps = int(getattr(config, "n_obs_steps", 1) or 1)
        if self.lerobot_type == "diffusion":
            chunk = int(config.n_action_steps)  # generate_actions returns n_action_steps actions
        else:
            chunk = int(getattr(config, "chunk_size", None) or getattr(config, "n_action_steps", 1))
        self._metadata = PolicyMetadata(
            observation_spec=spec,
            action_dim=self.action_dim,
            chunk_size=chunk,
            fps=float(fps or _fps_of(self.path)),
            policy_type="lerobot",
            extra={
                "lerobot_type": self.lerobot_type,
                "n_action_steps": int(getattr(config, "n_action_steps", chunk) or chunk),
                "n_obs_steps": self.n_obs_steps,
                "key_map": ",".join(f"{v}={k}" for k, v in self.sources.items()),
            },
        )

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def reset(self) -> None:
        """Clears LeRobot's own queues (select_action's); predict_chunk does not use them."""
        self.model.reset()

    def policy_inputs(self, obs_batch: Mapping[str, Any]) -> dict[str, Any]:
        """The batch LeRobot's preprocessor takes: policy feature names, torch, images in [0, 1] CHW."""
        import torch

        batch: dict[str, Any] = {}
        size = None
        for key, env_key in self.sources.items():
            if env_key not in obs_batch:
                raise KeyError(f"observation lacks {env_key!r}, which feeds {key!r} (has {sorted(obs_batch)})")
            arr = np.asarray(obs_batch[env_key])
            if key in self.image_features:
                if arr.ndim != 4 or arr.shape[-1] != 3:
                    raise ValueError(f"{env_key} must be (B, H, W, 3) uint8, got {arr.shape}")
                t = torch.from_numpy(np.array(arr)).permute(0, 3, 1, 2)  # a copy: wire arrays are read-only
                t = t.to(torch.float32) / 255.0 if arr.dtype == np.uint8 else t.to(torch.float32)
            else:
                t = torch.from_numpy(np.array(arr, dtype=np.float32))
            batch[key] = t.contiguous()
            size = t.shape[0]
        tasks = obs_batch.get(TASK)
        if tasks is not None:
            batch[TASK] = [str(x) for x in tasks] if not isinstance(tasks, str) else [tasks] * int(size or 1)
        elif size is not None:
            batch[TASK] = [""] * int(size)
        return batch

    def _model_batch(self, processed: Mapping[str, Any]) -> dict[str, Any]:
        """A stateless call: a policy with n_obs_steps > 1 sees the current observation repeated
        (what LeRobot's select_action does on an episode's first step)."""
        batch = dict(processed)
        if self.lerobot_type == "diffusion" and self.n_obs_steps >= 1:
            for key in list(batch):
                value = batch[key]
                if key.startswith("observation.") and hasattr(value, "ndim"):
                    batch[key] = value.unsqueeze(1).expand(-1, self.n_obs_steps, *value.shape[1:])
        return batch

    def predict_chunk(self, obs_batch: Mapping[str, Any], prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        """(B, H, A) float32 in env units. ``prefix`` is not used (see docs/lerobot.md on RTC)."""
        import torch

        queues = getattr(self.model, "_queues", None)
        if isinstance(queues, dict) and any(len(q) for q in queues.values()):
            self.model.reset()  # LeRobot's Diffusion would read its select_action queues instead of the batch
        with torch.inference_mode():
            processed = self.preprocessor(self.policy_inputs(obs_batch))
            chunk = self.model.predict_action_chunk(self._model_batch(processed))
            out = self.postprocessor(chunk)
        return out.detach().to("cpu", torch.float32).numpy().reshape(out.shape[0], -1, self.action_dim)


def load_lerobot(path: Path) -> LeRobotPolicy:
    return LeRobotPolicy(path)


def _is_visual(feature: Any) -> bool:
    kind = getattr(feature, "type", None)
    return str(getattr(kind, "name", kind)).upper() == "VISUAL"


register_loader("lerobot", load_lerobot)
