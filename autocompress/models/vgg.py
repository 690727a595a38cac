"""VGG with BatchNorm for 32×32 inputs (CIFAR): conv stages, then one linear classifier."""

from __future__ import annotations

import torch
from torch import nn

CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    """Conv layers are ``features.<i>`` (3×3, BN, ReLU), the classifier is ``classifier``."""

    def __init__(
        self,
        depth: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"vgg depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers: list[nn.Module] = []
        channels, side = in_channels, input_size
        for item in CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
                continue
            out = max(1, round(int(item) * width))
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        if side < 1:
            raise ValueError(f"vgg needs input_size >= 32, got {input_size}")
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
