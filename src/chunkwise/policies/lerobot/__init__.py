"""``--policy.type=lerobot``: serve and evaluate a LeRobot policy checkpoint (docs/lerobot.md).

Registering the family imports nothing of lerobot; ``policy.py`` imports it when a
checkpoint is loaded. A LeRobot directory is recognised by ``files.is_lerobot_checkpoint``
(stdlib only), so ``--policy.path=<LeRobot dir>`` loads it whatever its ``"type"`` says.
"""

from chunkwise.policies.registry import PolicyFamily, register_family

register_family(PolicyFamily(
    name="lerobot",
    description="a LeRobot policy directory (ACT, Diffusion, pi0, ...) with its processors; needs the lerobot extra",
    loader="chunkwise.policies.lerobot.policy",
    claims="chunkwise.policies.lerobot.files:is_lerobot_checkpoint",
))
