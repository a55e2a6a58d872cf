"""ACT: Action Chunking with Transformers (Zhao et al. 2023) as a chunkwise Policy."""

from chunkwise.policies.act.config import ACTConfig

__all__ = ["ACTConfig"]
