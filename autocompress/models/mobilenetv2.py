"""MobileNetV2 for 32×32 inputs (CIFAR): the first conv and the second stage use stride 1."""

from __future__ import annotations

import torch
from torch import nn

# (expansion, out channels, blocks, stride)
STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _divisible(v: float, divisor: int = 8) -> int:
    """Round a width to a multiple of 8, never more than 10% below it (as in the paper's code)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inp * expansion
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Cifar(nn.Module):
    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: float = 1.0
    ) -> None:
        super().__init__()
        del input_size  # global pooling
        inp = _divisible(32 * width)
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, inp, 3, 1, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU6()
            )
        ]
        for expansion, channels, blocks, stride in STAGES:
            out = _divisible(channels * width)
            for i in range(blocks):
                layers.append(InvertedResidual(inp, out, stride if i == 0 else 1, expansion))
                inp = out
        last = _divisible(1280 * max(1.0, width))
        layers.append(
            nn.Sequential(nn.Conv2d(inp, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6())
        )
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))
