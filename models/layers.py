"""Shared building blocks that reproduce torchvision's module layout.

torchvision checkpoints are addressed by module path (``features.1.conv.0.1.weight``),
so these blocks are written to produce exactly the same child names and order as
torchvision's ``Conv2dNormActivation`` and ``SqueezeExcitation``; a checkpoint saved
from torchvision then loads into our models with ``strict=True``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "make_divisible",
    "ConvBNActivation",
    "SqueezeExcitation",
    "init_mobilenet_weights",
    "global_pool_flatten",
]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (TF-slim/torchvision rule).

    Mobile accelerators and vectorised kernels run best on channel counts divisible
    by 8; rounding may never lose more than 10% of ``value``. The rule must match
    torchvision bit for bit, otherwise width-scaled checkpoints stop loading.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNActivation(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, children named ``0``, ``1``, ``2``.

    Equivalent to torchvision's ``Conv2dNormActivation``: padding defaults to
    ``(kernel_size - 1) // 2 * dilation`` and the conv has a bias only when there is
    no norm layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        dilation: int = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018) with torchvision's child names.

    ``avgpool -> fc1 (1x1 conv) -> activation -> fc2 (1x1 conv) -> scale_activation``,
    then the input is rescaled channel-wise. MobileNetV3 passes ``nn.Hardsigmoid``
    as ``scale_activation``.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: Tensor) -> Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self._scale(x) * x


def init_mobilenet_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation (shared by V2 and V3).

    Kaiming-normal (fan_out) convs, unit/zero norms, N(0, 0.01) linear layers.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def global_pool_flatten(x: Tensor) -> Tensor:
    """Adaptive average pool to 1x1 then flatten, as torchvision's MobileNetV2 does."""
    x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
    return torch.flatten(x, 1)
