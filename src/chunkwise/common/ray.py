"""Ray, shared by every command that can run on it (``eval``/``sweep`` episodes, ``rl``
actors): the ``--ray.*`` flags, the ``--backend`` check, and one ``ray.init`` per process.

Nothing here imports ray at module level: ``import chunkwise`` never imports it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

INSTALL_HINT = "pip install -e '.[ray]'"
BACKENDS = ("pool", "ray")


@dataclass
class RayConfig:
    """``--ray.*`` (used with ``--backend=ray``)."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else start a local Ray; "auto": a running cluster
    num_cpus_per_task: float = 1.0  # Ray resources one task (one block of episodes) asks for
    episodes_per_task: int = 1  # consecutive episodes of one (env, policy) config per task
    max_retries: int = 3  # times Ray re-runs a task whose worker died or was lost
    num_cpus: int | None = None  # only when starting a local Ray: its CPUs (default: all cores)
    summary: bool = True  # one stderr line after the run: episodes per node, episode vs wall time

    def __post_init__(self) -> None:
        if not self.num_cpus_per_task > 0:
            raise ValueError(f"--ray.num_cpus_per_task must be > 0, got {self.num_cpus_per_task}")
        if self.episodes_per_task < 1:
            raise ValueError(f"--ray.episodes_per_task must be >= 1, got {self.episodes_per_task}")
        if self.max_retries < 0:
            raise ValueError(f"--ray.max_retries must be >= 0, got {self.max_retries}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"--ray.num_cpus must be >= 1, got {self.num_cpus}")

    def resolved_address(self) -> str:
        """--ray.address, else $RAY_ADDRESS, else "local" (a new local Ray, even if a
        cluster runs on this machine: joining one is asked for with "auto")."""
        return self.address or os.environ.get("RAY_ADDRESS") or "local"


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def check_backend(backend: str, server: str | None = None) -> None:
    """ValueError (one line) for an unknown backend, ray missing, or ray with ``--server``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown --backend={backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "ray":
        if server:
            raise ValueError("--backend=ray runs episodes on the virtual clock; drop --server (or --backend)")
        if not ray_available():
            raise ValueError(f"--backend=ray needs ray, which is not installed: {INSTALL_HINT}")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(f"--backend=ray needs ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RaySession:
    """ray.init unless Ray is already initialized in this process; shutdown only what we started."""

    def __init__(self, cfg: RayConfig) -> None:
        self.ray = _import_ray()
        self.started = False
        if not self.ray.is_initialized():
            address = cfg.resolved_address()
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "logging_level": "WARNING"}
            if address == "local" and cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            self.ray.init(**kwargs)
            self.started = True

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
