"""The one Policy protocol everything wraps (local model, oracle, remote server)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from chunkwise.types import ObservationBatch, PolicyMetadata, Prefix


@runtime_checkable
class Policy(Protocol):
    """``predict_chunk(obs_batch, prefix) -> (B, H, A) float32``.

    ``prefix`` is None or a sequence of length B whose items are ``Prefix`` or None:
    the queued actions and the inference delay for each batch element. Policies that
    cannot use it ignore it (``metadata.prefix_length`` is None).
    """

    @property
    def metadata(self) -> PolicyMetadata: ...

    def predict_chunk(
        self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None
    ) -> np.ndarray: ...

    def reset(self) -> None: ...
