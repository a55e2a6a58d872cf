"""Policy families: each registers itself once, in its own folder; ``load(path)`` uses them.

A family says what ``--policy.type=<name>`` means in every command and where its pieces
are, as module names imported only when needed (listing families imports no torch)::

    register_family(PolicyFamily(
        name="flow",                                        # --policy.type, checkpoint "type"
        loader="chunkwise.policies.flow.policy",            # registers load(path) for "flow"
        config="chunkwise.policies.flow.config",            # registers the training config
        strategies="chunkwise.policies.flow.strategies",    # registers rtc_guided, ...
        strategy_names=("rtc_guided", "rtc_trained", "delta_expert"),
        description="flow matching (pi0-style), RTC, delta expert"))

``families()`` imports every direct child of ``chunkwise.policies`` once (each family's
``__init__.py`` or module calls ``register_family``), and any ``chunkwise/<pkg>/family.py``,
so adding a family means adding a folder (see docs/design-notes.md). A checkpoint directory holds ``config.json`` whose
``"type"`` names the family; a training run directory (no ``config.json``, but
``checkpoints/last/config.json``) loads its newest checkpoint. Loading never unpickles:
weights are safetensors, configs and stats are JSON.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from chunkwise.contracts import Policy


@dataclass(frozen=True)
class PolicyFamily:
    name: str
    description: str = ""
    loader: str | None = None  # module whose import registers load(path) for checkpoints of this type
    config: str | None = None  # module whose import registers --policy.type=<name> for `chunkwise train`
    strategies: str | None = None  # module whose import registers the family's execution strategies
    strategy_names: tuple[str, ...] = ()
    build: str | None = None  # "module:function" building the policy from flags (no checkpoint)
    build_config: str | None = None  # "module:Class" of those flags
    # "module:function(path) -> bool": claims a checkpoint directory another library wrote
    # (its config.json has no chunkwise format_version), e.g. a LeRobot policy directory
    claims: str | None = None


_FAMILIES: dict[str, PolicyFamily] = {}
_LOADERS: dict[str, Callable[[Path], Policy]] = {}
_DISCOVERED = False


def register_family(family: PolicyFamily) -> None:
    _FAMILIES[family.name] = family
    if family.strategies and family.strategy_names:
        from chunkwise.runtime.strategies import register_lazy_strategies

        register_lazy_strategies(family.strategy_names, family.strategies)


def families() -> dict[str, PolicyFamily]:
    """Every registered family, after importing each child of ``chunkwise.policies`` once."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        import chunkwise
        import chunkwise.policies as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in ("base", "registry", "rtc", "common"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
        # families declared beside code of a higher layer (e.g. rl/family.py): a declaration
        # module only; what it names is imported on first use
        for info in pkgutil.iter_modules(chunkwise.__path__):
            if info.ispkg and importlib.util.find_spec(f"chunkwise.{info.name}.family") is not None:
                importlib.import_module(f"chunkwise.{info.name}.family")
    return dict(_FAMILIES)


def get_family(name: str) -> PolicyFamily:
    fams = families()
    if name not in fams:
        raise ValueError(f"unknown policy type {name!r}; valid: {', '.join(sorted(fams))}")
    return fams[name]


def import_config_modules() -> None:
    """Register every trainable family's ``--policy.type`` (for ``chunkwise train``)."""
    for fam in families().values():
        if fam.config:
            importlib.import_module(fam.config)


def build_from_flags(name: str, flags: Any) -> Policy:
    fam = get_family(name)
    if fam.build is None:
        raise ValueError(f"--policy.type={name} is built from a checkpoint: give --policy.path")
    module, fn = fam.build.split(":")
    return getattr(importlib.import_module(module), fn)(flags)


def register_loader(policy_type: str, loader: Callable[[Path], Policy]) -> None:
    _LOADERS[policy_type] = loader


def checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory's newest checkpoint."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "checkpoints" / "last" / "config.json").is_file():
        path = path / "checkpoints" / "last"
    # a lerobot-train run (or one of its checkpoints) keeps the policy in pretrained_model/
    for sub in ("pretrained_model", "checkpoints/last/pretrained_model"):
        if not (path / "config.json").is_file() and (path / sub / "config.json").is_file():
            path = path / sub
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a chunkwise checkpoint: {cfg_file} does not exist")
    return path


def _claimed_by(path: Path, cfg: dict[str, Any]) -> str | None:
    """The family that claims a directory chunkwise did not write (no format_version)."""
    if "format_version" in cfg:
        return None
    for fam in families().values():
        if fam.claims:
            module, fn = fam.claims.split(":")
            if getattr(importlib.import_module(module), fn)(path):
                return fam.name
    return None


def checkpoint_type(path: str | Path) -> str:
    path = checkpoint_dir(path)
    cfg = json.loads((path / "config.json").read_text())
    return _claimed_by(path, cfg) or str(cfg.get("type"))


def load(path: str | Path) -> Policy:
    path = checkpoint_dir(path)
    cfg_file = path / "config.json"
    cfg = json.loads(cfg_file.read_text())
    policy_type = _claimed_by(path, cfg) or cfg.get("type")
    if policy_type not in _LOADERS:
        fam = families().get(str(policy_type))
        if fam is not None and fam.loader:
            importlib.import_module(fam.loader)
    if policy_type not in _LOADERS:
        known = sorted(name for name, f in families().items() if f.loader)
        raise ValueError(f"{cfg_file}: unknown policy type {policy_type!r}; known: {known}")
    return _LOADERS[policy_type](path)
