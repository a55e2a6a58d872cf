"""The SAC actor that ``chunkwise rl`` trains, as a policy family (checkpoint type ``rl_sac``).

Declared here, beside the trainer, because its networks live in rl/; the policy registry
imports this declaration only (the loader, ``rl/policy.py``, on first load).
"""

from chunkwise.policies.registry import PolicyFamily, register_family

register_family(PolicyFamily(
    name="rl_sac",
    description="SAC actor over action chunks (chunkwise rl): deterministic tanh(mean) chunk",
    loader="chunkwise.rl.policy",
))
