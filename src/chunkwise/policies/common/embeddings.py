"""Sinusoidal embeddings (Vaswani et al. 2017), 1-D for sequences / scalars, 2-D for feature maps.

1-D, position p, dimension D, i in [0, D/2):
    emb[p, 2i]   = sin(p / 10000^(2i/D))
    emb[p, 2i+1] = cos(p / 10000^(2i/D))
(We concatenate the sin half and the cos half instead of interleaving; equivalent up to a
fixed permutation of channels.)
2-D: half of the channels encode the row, half the column.
"""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """positions (...,) float -> (..., dim). Works for integer positions and flow time t in [0, 1]."""
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    args = positions.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def sinusoidal_1d(length: int, dim: int) -> torch.Tensor:
    """(length, dim) table for positions 0..length-1."""
    return sinusoidal_embedding(torch.arange(length), dim)


def sinusoidal_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """(height * width, dim) table, row-major, for flattened feature maps."""
    if dim % 4:
        raise ValueError(f"2-D embedding dim must be divisible by 4, got {dim}")
    rows = sinusoidal_1d(height, dim // 2)  # (h, dim/2)
    cols = sinusoidal_1d(width, dim // 2)  # (w, dim/2)
    grid = torch.cat(
        [rows[:, None, :].expand(height, width, dim // 2), cols[None, :, :].expand(height, width, dim // 2)], dim=-1
    )
    return grid.reshape(height * width, dim)
