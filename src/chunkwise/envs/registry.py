"""``make_env(cfg)``: build a ChunkEnv from any registered ``EnvConfig``.

Adapters register themselves with ``@EnvConfig.register_subclass("<type>")`` when their
module is imported; ``chunkwise.envs`` imports the built-in ones (MetaWorld, LIBERO: its
simulator is an optional extra, imported when an env is made). A new simulator only needs
its module imported here.
"""

from __future__ import annotations

from chunkwise.envs import libero as _libero  # noqa: F401 - registers "libero" (imports LIBERO lazily)
from chunkwise.envs import metaworld as _metaworld  # noqa: F401 - registers "metaworld"
from chunkwise.envs.base import ChunkEnv, EnvConfig


def env_types() -> list[str]:
    """Names accepted by ``--env.type``."""
    return sorted(EnvConfig.get_known_choices())


def make_env(cfg: EnvConfig) -> ChunkEnv:
    if not isinstance(cfg, EnvConfig):
        raise TypeError(f"make_env expects an EnvConfig, got {type(cfg).__name__}")
    return cfg.make()
