"""The architecture families users bring, in their own shapes and at toy sizes.

torchvision and timm cannot be installed beside the CPU torch here, so each family is
written out in the shape its reference implementation has (a few dozen lines each): what
matters to the engine is the coupling — residual adds with projection shortcuts, squeeze-and-
excitation, concatenation, grouped and depthwise convolutions, attention written by hand and
through ``nn.MultiheadAttention``, class tokens and position embeddings, embeddings and
recurrent layers fed integer tokens. Each factory takes ``num_classes`` like the zoo's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

VOCAB, SEQ = 50, 12


# ----------------------------------------------------------------------------- torchvision ResNet
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet-50 layout (stem, max-pool, bottleneck stages, avg-pool, fc)."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (8, 16)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, inplanes = [], widths[0]
        for i, planes in enumerate(widths):
            blocks = [Bottleneck(inplanes, planes, 1 if i == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            blocks.append(Bottleneck(inplanes, planes))
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------- MobileNetV3
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int, gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.ReLU()
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3 / EfficientNet block: expand 1×1, depthwise k×k, SE, project 1×1."""

    def __init__(
        self, cin: int, hidden: int, cout: int, stride: int, act: type[nn.Module], se: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            act(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            act(),
        ]
        if se:
            layers.append(SqueezeExcite(hidden, max(4, hidden // 4)))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3 shape: hard-swish, SE with hard-sigmoid, a Linear classifier
    with hard-swish and dropout."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish()),
            InvertedResidual(8, 16, 8, 1, nn.ReLU, se=True),
            InvertedResidual(8, 24, 12, 2, nn.Hardswish, se=False),
            InvertedResidual(12, 32, 12, 1, nn.Hardswish, se=True),
            nn.Sequential(nn.Conv2d(12, 48, 1, bias=False), nn.BatchNorm2d(48), nn.Hardswish()),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(48, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------- EfficientNet / RegNet
class EfficientNet(nn.Module):
    """MBConv blocks with SiLU and SE (sigmoid gate), a 1×1 head conv, dropout, Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU()
        )
        self.blocks = nn.Sequential(
            InvertedResidual(8, 32, 8, 1, nn.SiLU, se=True),
            InvertedResidual(8, 32, 16, 2, nn.SiLU, se=True),
        )
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class RegNetBlock(nn.Module):
    """RegNet's X block: 1×1, grouped 3×3 (group width 4), 1×1, with a projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 4) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.b = nn.Sequential(
            nn.Conv2d(cout, cout, 3, stride, 1, groups=cout // group_width, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )
        self.c = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(x) + self.c(self.b(self.a(x))))


class RegNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.trunk = nn.Sequential(RegNetBlock(8, 16, 2), RegNetBlock(16, 16, 1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(self.stem(x)).mean((2, 3)))


# ----------------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)  # torchvision's concatenation before BN-ReLU-conv
        x = self.conv1(torch.relu(self.norm1(x)))
        return self.conv2(torch.relu(self.norm2(x)))


class DenseNet(nn.Module):
    """torchvision's DenseNet: pre-activation layers on the concatenation of all earlier
    feature maps, a transition (BN, 1×1 conv, avg-pool), a final BN over the concatenation."""

    def __init__(self, num_classes: int = 10, growth: int = 4) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(8)
        self.block1 = nn.ModuleList([DenseLayer(8 + i * growth, growth) for i in range(3)])
        c = 8 + 3 * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)
        )
        self.block2 = nn.ModuleList([DenseLayer(c // 2 + i * growth, growth) for i in range(2)])
        self.norm5 = nn.BatchNorm2d(c // 2 + 2 * growth)
        self.classifier = nn.Linear(c // 2 + 2 * growth, num_classes)

    @staticmethod
    def _block(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in layers:
            features.append(layer(features))
        return torch.cat(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm0(self.conv0(x)))
        x = self.transition(self._block(self.block1, x))
        x = torch.relu(self.norm5(self._block(self.block2, x)))
        return self.classifier(x.mean((2, 3)))


# ----------------------------------------------------------------------------- ViT / DeiT
class Attention(nn.Module):
    """timm's Attention: one qkv Linear reshaped into heads, softmax(q·kᵀ/√d)·v, proj Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """DeiT-style: patch embedding conv, class token, learned position embedding, pre-norm
    blocks, final LayerNorm, Linear head on the class token."""

    def __init__(
        self, num_classes: int = 10, dim: int = 16, patch: int = 4, depth: int = 2
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (16 // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[ViTBlock(dim, 2, dim * 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


# ----------------------------------------------------------------------------- text models
class TextTransformer(nn.Module):
    """Token ids → nn.Embedding + position embedding → nn.TransformerEncoder (its
    nn.MultiheadAttention) → mean over tokens → Linear."""

    def __init__(self, num_classes: int = 4, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.pos = nn.Parameter(torch.zeros(1, SEQ, dim))
        layer = nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.pre_head = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embed(ids) + self.pos[:, : ids.shape[1]])
        return self.head(torch.tanh(self.pre_head(x.mean(1))))


class RNNClassifier(nn.Module):
    """Token ids → nn.Embedding → LSTM or GRU (2 layers, bidirectional) → last step → MLP."""

    def __init__(self, num_classes: int = 4, cell: str = "lstm", hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 12)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(12, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(2 * hidden, 24)
        self.fc2 = nn.Linear(24, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))
        return self.fc2(torch.relu(self.fc1(out[:, -1])))


def resnet(num_classes: int = 10) -> nn.Module:
    return ResNet(num_classes)


def mobilenet_v3(num_classes: int = 10) -> nn.Module:
    return MobileNetV3(num_classes)


def efficientnet(num_classes: int = 10) -> nn.Module:
    return EfficientNet(num_classes)


def regnet(num_classes: int = 10) -> nn.Module:
    return RegNet(num_classes)


def densenet(num_classes: int = 10) -> nn.Module:
    return DenseNet(num_classes)


def vit(num_classes: int = 10) -> nn.Module:
    return ViT(num_classes)


def text_transformer(num_classes: int = 4) -> nn.Module:
    return TextTransformer(num_classes)


def lstm(num_classes: int = 4) -> nn.Module:
    return RNNClassifier(num_classes, "lstm")


def gru(num_classes: int = 4) -> nn.Module:
    return RNNClassifier(num_classes, "gru")


@dataclass(frozen=True)
class Family:
    build: Callable[[], nn.Module]
    example: Callable[[int], torch.Tensor]  # batch size -> inputs

    def inputs(self, batch: int = 1) -> torch.Tensor:
        return self.example(batch)


def _images(batch: int) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 16)


def _tokens(batch: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, SEQ), generator=torch.Generator().manual_seed(batch))


FAMILIES: dict[str, Family] = {
    "resnet": Family(resnet, _images),
    "mobilenet_v3": Family(mobilenet_v3, _images),
    "efficientnet": Family(efficientnet, _images),
    "regnet": Family(regnet, _images),
    "densenet": Family(densenet, _images),
    "vit": Family(vit, _images),
    "text_transformer": Family(text_transformer, _tokens),
    "lstm": Family(lstm, _tokens),
    "gru": Family(gru, _tokens),
}


def image_data(n: int = 160) -> dict[str, object]:
    """A ``data.factory``: random 3×16×16 images whose class is the brightest channel and
    half, normalised with the mean/std it reports (so exports take raw [0, 1] images)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 16, 16, generator=g)
    y = x.mean((2, 3)).argmax(1) * 2 + (x[:, :, :8].mean((1, 2, 3)) > 0.5).long()
    mean, std = [0.5, 0.5, 0.5], [0.29, 0.29, 0.29]
    x = (x - 0.5) / 0.29
    split = n * 3 // 4
    return {
        "x_train": x[:split],
        "y_train": y[:split],
        "x_test": x[split:],
        "y_test": y[split:],
        "mean": mean,
        "std": std,
    }


def token_data(n: int = 160) -> tuple[torch.Tensor, ...]:
    """A ``data.factory`` of integer token sequences; the class is the first token's quarter."""
    x = torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(0))
    y = x[:, 0] * 4 // VOCAB
    split = n * 3 // 4
    return x[:split], y[:split], x[split:], y[split:]
