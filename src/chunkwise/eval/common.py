"""Pieces shared by ``chunkwise eval`` and ``chunkwise sweep``: defaults, validation, I/O."""

from __future__ import annotations

from dataclasses import replace

from chunkwise.common.cli import CLIError, parse_cli
from chunkwise.common.files import atomic_write_json, atomic_write_text
from chunkwise.envs.base import EnvConfig
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import available_strategies, get_strategy
from chunkwise.scheduling.trigger import starvation_note


def default_env() -> EnvConfig:
    import chunkwise.envs  # noqa: F401 - registers the built-in env types

    return EnvConfig.get_choice_class("metaworld")(task="push-v3")


def _families() -> None:
    """Families announce their strategies (rtc_guided, oracle_prefix, ...) when listed."""
    from chunkwise.policies.registry import families

    families()


def valid_strategy_names() -> list[str]:
    _families()
    return ["async"] + available_strategies()


def check_strategy_name(name: str) -> None:
    _families()
    if name != "async":
        try:
            get_strategy(name)
        except ValueError:
            raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(valid_strategy_names())}") from None


def execution_note(execution: ExecutionConfig, delay: int) -> str | None:
    """``starvation_note`` for an async execution at ``delay`` (sync blocks instead: None)."""
    if execution.strategy != "async" or not execution.actions_per_chunk:
        return None
    return starvation_note(execution.actions_per_chunk, delay, execution.chunk_size_threshold)


def resolve_strategy(name: str, base: ExecutionConfig) -> tuple[ExecutionConfig, str | None, tuple[str, ...]]:
    """Strategy name -> (execution config, registry name for wrap_policy, plugin modules).

    "async" means async with ``base.aggregate_fn_name``; any other name comes from the
    strategy registry ("sync", an aggregate name, or a plugin such as "rtc_guided").
    """
    check_strategy_name(name)
    if name == "async":
        return replace(base, strategy="async"), None, ()
    spec = get_strategy(name)
    mod = getattr(spec.apply, "__module__", "") or ""
    plugins = (mod,) if mod and not mod.startswith("chunkwise.runtime") else ()
    return spec.apply(base), name, plugins


def check_common(
    *, chunk_size_threshold: float, actions_per_chunk: int, n_episodes: int, n_workers: int,
    chunk_size: int | None, aggregate_fn_name: str, delays: list[int] | None = None,
) -> None:
    from chunkwise.scheduling.aggregate import check_aggregate_name

    check_aggregate_name(aggregate_fn_name)
    if not 0.0 <= chunk_size_threshold <= 1.0:
        raise ValueError(f"chunk_size_threshold must be in [0, 1], got {chunk_size_threshold}")
    if actions_per_chunk <= 0:
        raise ValueError(f"actions_per_chunk must be positive, got {actions_per_chunk}")
    if chunk_size is not None and actions_per_chunk > chunk_size:
        raise ValueError(f"actions_per_chunk={actions_per_chunk} > chunk size {chunk_size} of the policy")
    if n_episodes <= 0:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    for d in delays or []:
        if d < 0:
            raise ValueError(f"inference delay must be >= 0 control steps, got {d}")


__all__ = ["CLIError", "atomic_write_json", "atomic_write_text", "parse_cli"]  # one copy each, in chunkwise.common
