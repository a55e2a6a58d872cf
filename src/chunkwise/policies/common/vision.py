"""A small CNN image encoder in plain torch (torchvision is not available on this CPU build).

uint8 HWC images -> float in [-1, 1] -> 4 stride-2 conv blocks (GroupNorm + SiLU) ->
feature map (B, C, H/16, W/16). Policies turn the map into tokens (ACT) or pool it (flow).
"""

from __future__ import annotations

import torch
from torch import nn


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (B, H, W, 3), got {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class ConvBackbone(nn.Module):
    """``channels`` sets the width of each stride-2 stage; output has ``channels[-1]`` maps."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 128), groups: int = 8) -> None:
        super().__init__()
        if not channels:
            raise ValueError("ConvBackbone needs at least one stage")
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            g = groups if c_out % groups == 0 else 1
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(g, c_out),
                nn.SiLU(),
                nn.Conv2d(c_out, c_out, kernel_size=3, padding=1),
                nn.GroupNorm(g, c_out),
                nn.SiLU(),
            ]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = channels[-1]
        self.stride = 2 ** len(channels)

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, C, H / stride, W / stride)."""
        return self.net(images_to_float(images_uint8))
