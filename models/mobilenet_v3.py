"""MobileNetV3 Small/Large (Howard et al. 2019), twins of torchvision's ``mobilenet_v3_*``.

Reproduces torchvision's layout exactly: hardswish activations, squeeze-excitation
with ReLU + hardsigmoid whose width is ``make_divisible(expanded // 4, 8)``,
BatchNorm with ``eps=0.001, momentum=0.01``, and the Linear-Hardswish-Dropout-Linear
classifier, so torchvision checkpoints load with ``strict=True``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from .layers import ConvBNActivation, SqueezeExcitation, init_mobilenet_weights, make_divisible
from .registry import register_model

__all__ = ["BlockConfig", "InvertedResidual", "MobileNetV3", "mobilenet_v3_small", "mobilenet_v3_large"]


class BlockConfig(NamedTuple):
    """One bottleneck row of the paper's tables (channels before width scaling)."""

    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hardswish)
    stride: int


# Tables 1 and 2 of the paper, in torchvision's order.
_LARGE: tuple[BlockConfig, ...] = (
    BlockConfig(16, 3, 16, 16, False, "RE", 1),
    BlockConfig(16, 3, 64, 24, False, "RE", 2),
    BlockConfig(24, 3, 72, 24, False, "RE", 1),
    BlockConfig(24, 5, 72, 40, True, "RE", 2),
    BlockConfig(40, 5, 120, 40, True, "RE", 1),
    BlockConfig(40, 5, 120, 40, True, "RE", 1),
    BlockConfig(40, 3, 240, 80, False, "HS", 2),
    BlockConfig(80, 3, 200, 80, False, "HS", 1),
    BlockConfig(80, 3, 184, 80, False, "HS", 1),
    BlockConfig(80, 3, 184, 80, False, "HS", 1),
    BlockConfig(80, 3, 480, 112, True, "HS", 1),
    BlockConfig(112, 3, 672, 112, True, "HS", 1),
    BlockConfig(112, 5, 672, 160, True, "HS", 2),
    BlockConfig(160, 5, 960, 160, True, "HS", 1),
    BlockConfig(160, 5, 960, 160, True, "HS", 1),
)
_SMALL: tuple[BlockConfig, ...] = (
    BlockConfig(16, 3, 16, 16, True, "RE", 2),
    BlockConfig(16, 3, 72, 24, False, "RE", 2),
    BlockConfig(24, 3, 88, 24, False, "RE", 1),
    BlockConfig(24, 5, 96, 40, True, "HS", 2),
    BlockConfig(40, 5, 240, 40, True, "HS", 1),
    BlockConfig(40, 5, 240, 40, True, "HS", 1),
    BlockConfig(40, 5, 120, 48, True, "HS", 1),
    BlockConfig(48, 5, 144, 48, True, "HS", 1),
    BlockConfig(48, 5, 288, 96, True, "HS", 2),
    BlockConfig(96, 5, 576, 96, True, "HS", 1),
    BlockConfig(96, 5, 576, 96, True, "HS", 1),
)
_LAST_CHANNEL = {"large": 1280, "small": 1024}


def _adjust(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: [expand] -> depthwise -> [SE] -> project (+ residual)."""

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        use_hs: bool,
        stride: int,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        if not 1 <= stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = stride == 1 and input_channels == out_channels
        activation_layer = nn.Hardswish if use_hs else nn.ReLU

        layers: list[nn.Module] = []
        if expanded_channels != input_channels:
            layers.append(
                ConvBNActivation(
                    input_channels,
                    expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=activation_layer,
                )
            )
        layers.append(
            ConvBNActivation(
                expanded_channels,
                expanded_channels,
                kernel_size=kernel,
                stride=stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
            )
        )
        if use_se:
            squeeze_channels = make_divisible(expanded_channels // 4, 8)
            layers.append(
                SqueezeExcitation(expanded_channels, squeeze_channels, scale_activation=nn.Hardsigmoid)
            )
        layers.append(
            ConvBNActivation(
                expanded_channels, out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=None
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


class MobileNetV3(nn.Module):
    """MobileNetV3 backbone + Linear-Hardswish-Dropout-Linear classifier.

    ``small_input=True`` (CIFAR-style, 32x32 inputs) sets the stride of the stem
    conv and of the first stride-2 bottleneck to 1: total downsampling goes from
    32x to 8x, so a 32x32 image ends on a 4x4 feature map (like the other students'
    small-input variants). Only strides change, so the state_dict is identical to the
    ImageNet model. In the Small variant this turns the first bottleneck (16 -> 16
    channels) into a residual block, as stride-1 bottlenecks with equal widths are.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        table = {"large": _LARGE, "small": _SMALL}[arch]
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        # With small_input, the first stride-2 bottleneck keeps full resolution.
        first_downsample = next(i for i, cfg in enumerate(table) if cfg.stride == 2)
        blocks: list[nn.Module] = []
        for i, cfg in enumerate(table):
            stride = 1 if (small_input and i == first_downsample) else cfg.stride
            blocks.append(
                InvertedResidual(
                    _adjust(cfg.input_channels, width_mult),
                    cfg.kernel,
                    _adjust(cfg.expanded_channels, width_mult),
                    _adjust(cfg.out_channels, width_mult),
                    cfg.use_se,
                    cfg.activation == "HS",
                    stride,
                    norm_layer,
                )
            )

        first_channels = _adjust(table[0].input_channels, width_mult)
        last_in = _adjust(table[-1].out_channels, width_mult)
        last_out = 6 * last_in
        last_channel = _adjust(_LAST_CHANNEL[arch], width_mult)
        self.features = nn.Sequential(
            ConvBNActivation(
                3,
                first_channels,
                kernel_size=3,
                stride=1 if small_input else 2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            ),
            *blocks,
            ConvBNActivation(
                last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.Hardswish
            ),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_mobilenet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register_model(family="mobilenet_v3", is_student=True)
def mobilenet_v3_small(
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    small_input: bool = False,
) -> MobileNetV3:
    """MobileNetV3-Small: hardswish + SE bottlenecks for low-end phones (2.5 M params)."""
    return MobileNetV3("small", num_classes, width_mult=width_mult, dropout=dropout, small_input=small_input)


@register_model(family="mobilenet_v3", is_student=True)
def mobilenet_v3_large(
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    small_input: bool = False,
) -> MobileNetV3:
    """MobileNetV3-Large: hardswish + SE bottlenecks, the accurate variant (5.5 M params)."""
    return MobileNetV3("large", num_classes, width_mult=width_mult, dropout=dropout, small_input=small_input)
