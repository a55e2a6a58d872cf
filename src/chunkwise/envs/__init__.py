"""Simulator adapters behind one interface (``ChunkEnv``) and one registry (``EnvConfig``).

``--env.type=metaworld --env.task=push-v3`` selects ``MetaWorldEnvConfig``; importing this
package registers every built-in adapter.
"""

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.envs.metaworld import MetaWorldEnv, MetaWorldEnvConfig
from chunkwise.envs.registry import env_types, make_env

__all__ = ["ChunkEnv", "EnvConfig", "MetaWorldEnv", "MetaWorldEnvConfig", "env_types", "make_env"]
