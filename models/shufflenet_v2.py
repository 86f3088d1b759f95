"""ShuffleNetV2 (Ma et al. 2018), twins of torchvision's ``shufflenet_v2_x*``.

Same channel split (``chunk(2)``), concat and 2-group channel shuffle as torchvision,
same module names (``conv1``, ``stage2..4``, ``conv5``, ``fc``) and PyTorch's default
initialisation (torchvision sets none for this family).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register_model

__all__ = [
    "channel_shuffle",
    "InvertedResidual",
    "ShuffleNetV2",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]

_REPEATS = (4, 8, 4)
# Output channels of conv1, stage2, stage3, stage4, conv5 for each width.
_CHANNELS: dict[str, tuple[int, int, int, int, int]] = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channels across ``groups`` so information crosses the two branches."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


def _depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or duplicate (stride 2), two branches, shuffle."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(f"stride 1 needs inp == oup, got inp {inp} and oup {oup}")

        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise_conv(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, 1, 1, 0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            _depthwise_conv(branch_features, stride),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 backbone, global mean pool and a linear classifier.

    ``small_input=True`` (CIFAR-style, 32x32 inputs) makes the stem conv stride 1
    and drops the stem max-pool (an ``nn.Identity`` keeps the attribute): total
    downsampling goes from 32x to 8x, so a 32x32 image ends on a 4x4 feature map.
    The state_dict is identical to the ImageNet model.
    """

    def __init__(
        self,
        stages_repeats: tuple[int, ...],
        stages_out_channels: tuple[int, ...],
        num_classes: int = 1000,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = list(stages_out_channels)

        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, output_channels, 3, 1 if small_input else 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool: nn.Module = (
            nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:]
        ):
            seq = [InvertedResidual(input_channels, output_channels, 2)]
            seq += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels

        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global pool
        return self.fc(x)


def _shufflenet_v2(width: str, num_classes: int, small_input: bool) -> ShuffleNetV2:
    return ShuffleNetV2(_REPEATS, _CHANNELS[width], num_classes, small_input=small_input)


@register_model(family="shufflenet_v2", is_student=True)
def shufflenet_v2_x0_5(num_classes: int = 1000, *, small_input: bool = False) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x: channel split + shuffle units, the smallest width (1.4 M params)."""
    return _shufflenet_v2("x0_5", num_classes, small_input)


@register_model(family="shufflenet_v2", is_student=True)
def shufflenet_v2_x1_0(num_classes: int = 1000, *, small_input: bool = False) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x: channel split + shuffle units (2.3 M params)."""
    return _shufflenet_v2("x1_0", num_classes, small_input)


@register_model(family="shufflenet_v2", is_student=True)
def shufflenet_v2_x1_5(num_classes: int = 1000, *, small_input: bool = False) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x: channel split + shuffle units (3.5 M params)."""
    return _shufflenet_v2("x1_5", num_classes, small_input)


@register_model(family="shufflenet_v2", is_student=True)
def shufflenet_v2_x2_0(num_classes: int = 1000, *, small_input: bool = False) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x: channel split + shuffle units, the widest (7.4 M params)."""
    return _shufflenet_v2("x2_0", num_classes, small_input)
