"""LeNet-300-100 and LeNet-5 (Caffe form), as compressed in Deep Compression (Han et al., 2016)."""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    """Fully connected 784-300-100-10 (266,610 params at 28×28).

    ``width`` scales the hidden widths (300, 100): the compact students of distillation.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: float = 1.0
    ) -> None:
        super().__init__()
        h1, h2 = (max(1, round(n * width)) for n in (300, 100))
        self.fc1 = nn.Linear(in_channels * input_size * input_size, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe's LeNet: conv1 20@5×5, pool, conv2 50@5×5, pool, fc1 500, fc2 classes.

    431,080 params and 2,293,000 MACs at 28×28 with 10 classes. ``width`` scales the hidden
    widths (20, 50, 500), which gives the compact students of the distillation experiments.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: float = 1.0
    ) -> None:
        super().__init__()
        c1, c2, h = (max(1, round(n * width)) for n in (20, 50, 500))
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5 needs input_size >= 16, got {input_size}")
        self.fc1 = nn.Linear(c2 * side * side, h)
        self.fc2 = nn.Linear(h, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)
