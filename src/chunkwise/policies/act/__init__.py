"""ACT: Action Chunking with Transformers (Zhao et al. 2023) as a chunkwise Policy."""

from chunkwise.policies.act.config import ACTConfig
from chunkwise.policies.registry import PolicyFamily, register_family

register_family(PolicyFamily(
    name="act",
    description="ACT (Zhao et al. 2023): transformer CVAE over action chunks",
    loader="chunkwise.policies.act.policy",
    config="chunkwise.policies.act.config",
))

__all__ = ["ACTConfig"]
