"""The IBRL proposal rule, shared by the learner and by a deployed RL checkpoint.

Imitation Bootstrapped RL (Hu et al. 2024) keeps the BC policy pi_ref beside the RL actor
pi; at every decision both propose a chunk and the critic picks:

    A* = argmax_{A in {A_rl, A_ref}} min_j Q_j(s, window(prefix, A))

where ``window`` is the executed window the chunk critic scores under delay d
(``rl/delayed.py``): the d committed prefix actions, then the chunk's executed part
from index o (o = d async, 0 sync); at d = 0 it is the chunk itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from chunkwise.types import Prefix


def executed_window(prefix: torch.Tensor | None, chunk: torch.Tensor, delay: int, offset: int) -> torch.Tensor:
    """(n, H, A): [prefix_0 .. prefix_d-1, chunk_o .. chunk_o+H-d-1]; ``chunk`` if d = 0."""
    if not delay or prefix is None:
        return chunk
    h = chunk.shape[1]
    return torch.cat([prefix[:, :delay], chunk[:, offset : offset + h - delay]], dim=1)


def critic_input(window: torch.Tensor, critic_type: str) -> torch.Tensor:
    """The chunk critic reads the flattened H*A window; the first-action critic its action 0."""
    return window.flatten(1) if critic_type == "chunk" else window[:, 0]


def min_q(critic: torch.nn.Module, state: torch.Tensor, chunk: torch.Tensor, critic_type: str,
          prefix: torch.Tensor | None = None, delay: int = 0, offset: int = 0) -> torch.Tensor:
    """(B,): min_j Q_j(s, window(prefix, chunk))."""
    return critic(state, critic_input(executed_window(prefix, chunk, delay, offset), critic_type)).min(0).values


def pick_proposal(
    critic: torch.nn.Module,
    state: torch.Tensor,
    proposals: Sequence[torch.Tensor],
    critic_type: str,
    prefix: torch.Tensor | None = None,
    delay: int = 0,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ((B, H, A) the chosen chunk per row, (B,) index of its proposal); ties go to the first."""
    q = torch.stack([min_q(critic, state, c, critic_type, prefix, delay, offset) for c in proposals])  # (P, B)
    idx = q.argmax(0)
    return torch.stack(list(proposals))[idx, torch.arange(state.shape[0])], idx


def committed_prefix(prefix: Prefix, idle: np.ndarray) -> np.ndarray:
    """(d, A): the actions that run while the chunk is computed. The queue may hold fewer
    than d (it ran dry); the robot then idles, so the rest is ``idle``."""
    a = prefix.actions[: prefix.delay]
    if len(a) < prefix.delay:
        pad = np.broadcast_to(np.asarray(idle, np.float32), (prefix.delay - len(a), a.shape[1]))
        a = np.concatenate([a, pad])
    return a
