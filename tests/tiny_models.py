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


class FlakyNet(nn.Module):
    """Fails on purpose when its middle conv is pruned hard, so tests can check that a search
    survives failing candidates: fewer than ``raise_below`` channels raise, fewer than
    ``nan_below`` give NaN logits (the fine-tune's loss turns NaN)."""

    def __init__(self, width: int = 16, raise_below: int = 5, nan_below: int = 9) -> None:
        super().__init__()
        self.raise_below, self.nan_below = raise_below, nan_below
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, width, 3, padding=1)
        self.head = nn.Linear(width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        if x.shape[1] < self.raise_below:
            raise RuntimeError(f"flaky: only {x.shape[1]} channels")
        logits = self.head(x.flatten(1))
        return logits * float("nan") if x.shape[1] < self.nan_below else logits


def flaky_net() -> nn.Module:
    return FlakyNet()
