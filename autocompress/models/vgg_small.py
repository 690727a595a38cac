"""A small VGG for 28×28 grey images (Fashion-MNIST): the CPU's deeper model for allocation.

Six 3×3 convolutions (32-32-64-64-128-128, each with BatchNorm and ReLU, a 2×2 max-pool after
every pair) and two linear layers (256 hidden units). About 29 M MACs and 0.58 M parameters at
28×28: deep enough that its layers differ in redundancy, small enough that its base trains on
two CPU cores in well under an hour.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = (32, 32, 64, 64, 128, 128)


class VGGSmall(nn.Module):
    """Conv layers are ``features.<i>``; the classifier is ``fc1`` (ReLU) then ``fc2``."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        width: float = 1.0,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, input_size
        for i, c in enumerate(CHANNELS):
            out = max(1, round(c * width))
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            channels = out
        if side < 1:
            raise ValueError(f"vgg_small needs input_size >= 8, got {input_size}")
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.features(x).flatten(1))))
