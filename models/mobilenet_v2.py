"""MobileNetV2 (Sandler et al. 2018), a drop-in twin of ``torchvision.models.mobilenet_v2``.

Same module tree, parameter names, ReLU6 activations, initialisation and forward
op order as torchvision, so torchvision checkpoints load with ``strict=True`` and
give identical outputs.
"""
from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvBNActivation, global_pool_flatten, init_mobilenet_weights, make_divisible
from .registry import register_model

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat)
_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(inp, hidden_dim, kernel_size=1, activation_layer=nn.ReLU6))
        layers.extend(
            [
                ConvBNActivation(
                    hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, activation_layer=nn.ReLU6
                ),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 backbone + dropout/linear classifier.

    ``small_input=True`` (CIFAR-style, 32x32 inputs) sets the stem conv stride and
    the stride of the second stage (c=24) to 1, the usual CIFAR variant: total
    downsampling goes from 32x to 8x, so a 32x32 image ends on a 4x4 feature map.
    Only strides change, so the state_dict (keys and shapes) is identical to the
    ImageNet model and ImageNet checkpoints still load.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        small_input: bool = False,
        round_nearest: int = 8,
    ) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            ConvBNActivation(3, input_channel, stride=1 if small_input else 2, activation_layer=nn.ReLU6)
        ]
        for stage, (t, c, n, s) in enumerate(_SETTING):
            if small_input and stage == 1:
                s = 1
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(
            ConvBNActivation(input_channel, self.last_channel, kernel_size=1, activation_layer=nn.ReLU6)
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_mobilenet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = global_pool_flatten(x)
        return self.classifier(x)


@register_model(family="mobilenet_v2", is_student=True)
def mobilenet_v2(
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    small_input: bool = False,
) -> MobileNetV2:
    """MobileNetV2: inverted residuals with linear bottlenecks, ReLU6 (3.5 M params at 1.0)."""
    return MobileNetV2(num_classes, width_mult=width_mult, dropout=dropout, small_input=small_input)
