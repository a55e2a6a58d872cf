"""Policies: the Policy protocol, a registry of checkpoint loaders, ``load(path)``."""

from chunkwise.policies.base import Policy
from chunkwise.policies.registry import load, register_loader

__all__ = ["Policy", "load", "register_loader"]
