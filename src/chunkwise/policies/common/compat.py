"""``check_compatible(metadata, env)``: fail before the first episode, not in the middle of one."""

from __future__ import annotations

from typing import Any

from chunkwise.types import PolicyMetadata


class IncompatiblePolicyError(ValueError):
    """The policy's action dim or observation spec does not match the environment."""


def check_compatible(metadata: PolicyMetadata, env: Any) -> None:
    """Compare a policy's metadata with an env's ``action_dim`` / ``observation_spec``.

    Every observation key the policy reads must be produced by the env with the same shape
    and dtype; the action dims must be equal. Raises ``IncompatiblePolicyError`` listing
    every mismatch.
    """
    problems: list[str] = []
    env_action_dim = int(env.action_dim)
    if metadata.action_dim != env_action_dim:
        problems.append(f"action_dim: policy outputs {metadata.action_dim}, env expects {env_action_dim}")
    env_spec = dict(env.observation_spec)
    for key, feat in metadata.observation_spec.items():
        if key not in env_spec:
            problems.append(
                f"observation key {key!r}: policy needs it, env does not provide it (env has {sorted(env_spec)}; "
                "check --env.cameras / --env.image_size)"
            )
            continue
        have = env_spec[key]
        if tuple(have.shape) != tuple(feat.shape) or have.dtype != feat.dtype:
            problems.append(
                f"observation key {key!r}: policy expects {tuple(feat.shape)} {feat.dtype}, "
                f"env gives {tuple(have.shape)} {have.dtype}"
            )
    if problems:
        task = getattr(env, "task", "?")
        raise IncompatiblePolicyError(
            f"policy ({metadata.policy_type}) is incompatible with env task {task!r}:\n  " + "\n  ".join(problems)
        )
