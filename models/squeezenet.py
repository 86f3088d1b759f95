"""SqueezeNet 1.0 / 1.1 (Iandola et al. 2016), twins of torchvision's ``squeezenet1_*``.

Fire modules, ``ceil_mode=True`` max pooling, and a fully convolutional classifier
(dropout -> 1x1 conv -> ReLU -> global average pool) exactly as torchvision builds
them, including its initialisation (kaiming-uniform convs, N(0, 0.01) final conv).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register_model

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]


class Fire(nn.Module):
    """1x1 squeeze, then parallel 1x1 and 3x3 expands concatenated on channels."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    """SqueezeNet ``version`` "1_0" or "1_1".

    ``small_input=True`` (CIFAR-style, 32x32 inputs) makes the first conv stride 1
    with "same" padding (kernel size unchanged, so the state_dict is identical to
    the ImageNet model) and keeps the three ceil-mode max-pools: total downsampling
    goes from 16x (224 -> 13) to 8x, so a 32x32 image ends on a 4x4 feature map.
    """

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        dropout: float = 0.5,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        stride = 1 if small_input else 2
        if version == "1_0":
            stem = nn.Conv2d(3, 96, kernel_size=7, stride=stride, padding=3 if small_input else 0)
            self.features = nn.Sequential(
                stem,
                nn.ReLU(inplace=True),
                _pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                _pool(),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                _pool(),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            stem = nn.Conv2d(3, 64, kernel_size=3, stride=stride, padding=1 if small_input else 0)
            self.features = nn.Sequential(
                stem,
                nn.ReLU(inplace=True),
                _pool(),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                _pool(),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                _pool(),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")

        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


@register_model(family="squeezenet", is_student=True)
def squeezenet1_0(num_classes: int = 1000, *, dropout: float = 0.5, small_input: bool = False) -> SqueezeNet:
    """SqueezeNet 1.0: fire modules, AlexNet accuracy with 50x fewer params (1.2 M)."""
    return SqueezeNet("1_0", num_classes, dropout=dropout, small_input=small_input)


@register_model(family="squeezenet", is_student=True)
def squeezenet1_1(num_classes: int = 1000, *, dropout: float = 0.5, small_input: bool = False) -> SqueezeNet:
    """SqueezeNet 1.1: 2.4x cheaper than 1.0 at the same accuracy (1.2 M params)."""
    return SqueezeNet("1_1", num_classes, dropout=dropout, small_input=small_input)
