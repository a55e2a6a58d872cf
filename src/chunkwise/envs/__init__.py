"""Simulator adapters behind one interface (``ChunkEnv``) and one registry (``EnvConfig``).

``--env.type=metaworld --env.task=push-v3`` selects ``MetaWorldEnvConfig``,
``--env.type=libero --env.task=libero_10 --env.task_id=3`` ``LiberoEnvConfig``; importing this
package registers every built-in adapter.
"""

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.envs.libero import LiberoEnv, LiberoEnvConfig
from chunkwise.envs.metaworld import MetaWorldEnv, MetaWorldEnvConfig
from chunkwise.envs.registry import env_types, make_env

__all__ = ["ChunkEnv", "EnvConfig", "LiberoEnv", "LiberoEnvConfig", "MetaWorldEnv", "MetaWorldEnvConfig", "env_types",
           "make_env"]
