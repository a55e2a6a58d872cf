"""``--correction.path``: the head that strategies ``<base>+correction`` load (no torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_PATH = "CHUNKWISE_CORRECTION_PATH"  # how the path reaches worker processes


@dataclass
class CorrectionSource:
    path: str | None = None  # a correction head dir (python -m chunkwise.eval.correction_train)

    def __post_init__(self) -> None:
        if self.path and not (Path(self.path) / "config.json").is_file():
            raise ValueError(f"--correction.path={self.path} is not a correction head dir (no config.json)")

    def check_used(self, strategies: list[str]) -> None:
        """A head that no strategy loads is a mistake (the run would measure the base strategy
        under a name that suggests the head): refuse it before any episode."""
        if self.path and not any(s.endswith("+correction") for s in strategies):
            raise ValueError(f"--correction.path={self.path} is given but no strategy uses it: "
                             f"name <base>+correction (e.g. latest_only+correction), got {','.join(strategies)}")

    def export(self) -> None:
        """Make the head visible to this process and the workers it starts."""
        if self.path:
            os.environ[ENV_PATH] = os.path.abspath(self.path)
