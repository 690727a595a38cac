"""Tiny models for tests, defined once: each exercises a coupling the pruner must handle."""

from __future__ import annotations

import torch
from torch import nn


class TinyResNet(nn.Module):
    """8×8 input: a stem, one residual block (add coupling), a depthwise conv, a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(width)
        self.conv_a = nn.Conv2d(width, width * 2, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(width * 2)
        self.conv_b = nn.Conv2d(width * 2, width, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width)
        self.pw = nn.Conv2d(width, width * 2, 1)
        self.head = nn.Linear(width * 2 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn_a(self.conv_a(x)))
        x = torch.relu(x + self.bn_b(self.conv_b(y)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.head(x.flatten(1))


def tiny_resnet(width: int = 8) -> nn.Module:
    return TinyResNet(width=width)


def tiny_mlp(hidden: int = 32) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
