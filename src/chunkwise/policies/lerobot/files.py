"""Recognise a LeRobot policy directory without importing lerobot (stdlib only).

A LeRobot ``save_pretrained`` / ``lerobot-train`` checkpoint holds ``config.json`` with a
top-level ``"type"`` (``"act"``, ``"diffusion"``, ``"pi0"``, ...) and the config fields
beside it, ``model.safetensors``, and the processor pipelines
(``policy_preprocessor.json``, ``policy_postprocessor.json`` and their ``.safetensors``
states). A chunkwise checkpoint's ``config.json`` has ``format_version`` and a nested
``"config"`` instead, and its statistics are in ``stats.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPROCESSOR = "policy_preprocessor.json"
POSTPROCESSOR = "policy_postprocessor.json"
WEIGHTS = "model.safetensors"
# fields every LeRobot PreTrainedConfig writes; chunkwise's config.json has none of them
_LEROBOT_CONFIG_KEYS = ("input_features", "output_features", "n_obs_steps")
INSTALL_HINT = "pip install -e '.[lerobot]' (needs Python >= 3.12; scripts/setup_lerobot_venv.sh builds .venv-lerobot)"


def read_config(path: str | Path) -> dict[str, Any] | None:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def is_lerobot_checkpoint(path: str | Path) -> bool:
    """True for a directory LeRobot wrote (not chunkwise): see the module docstring."""
    path = Path(path)
    cfg = read_config(path)
    if cfg is None or "format_version" in cfg or "type" not in cfg:
        return False
    has_processors = (path / PREPROCESSOR).is_file() or (path / POSTPROCESSOR).is_file()
    has_fields = any(k in cfg for k in _LEROBOT_CONFIG_KEYS)
    no_chunkwise_stats = not (path / "stats.safetensors").is_file()
    return (has_processors or has_fields) and no_chunkwise_stats


def not_chunkwise_error(path: str | Path, loader: str) -> ValueError:
    """The one-line error chunkwise's own loaders give for a LeRobot checkpoint."""
    cfg = read_config(path) or {}
    return ValueError(
        f"{path} is a LeRobot checkpoint (LeRobot {cfg.get('type')!r} policy: config.json with its "
        f"processor files, no stats.safetensors), not a chunkwise {loader} checkpoint: load it with "
        f"--policy.type=lerobot (extra: {INSTALL_HINT})"
    )
