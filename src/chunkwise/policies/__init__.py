"""Policies: the Policy protocol, the registry of policy families, ``load(path)``."""

from chunkwise.policies.base import Policy
from chunkwise.policies.registry import PolicyFamily, families, get_family, load, register_family, register_loader

__all__ = ["Policy", "PolicyFamily", "families", "get_family", "load", "register_family", "register_loader"]
