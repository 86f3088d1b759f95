"""CIFAR ResNet-20/56 (He et al. 2016, section 4.2): small teachers for 32x32 images.

3x3 stem with 16 channels, three stages of ``n`` basic blocks with 16/32/64
channels (6n + 2 layers), global average pool and a linear classifier.
Shortcuts use the paper's **option A** (as in its CIFAR experiments and the widely
used reference port): when a stage halves the resolution and doubles the
channels, the identity is subsampled by 2 and zero-padded on channels, so
shortcuts add no parameters (ResNet-20: 0.27 M, ResNet-56: 0.85 M parameters).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .registry import register_model

__all__ = ["PadShortcut", "CifarBasicBlock", "CifarResNet", "resnet20", "resnet56"]


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling plus zero channels, parameter-free."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_planes - in_planes
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = (
            PadShortcut(in_planes, planes, stride) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; the final feature map is 8x8 at 32x32."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [CifarBasicBlock(in_planes, planes, stride)]
            blocks += [CifarBasicBlock(planes, planes) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        # Reference-port initialisation: kaiming-normal conv and linear weights.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model(family="cifar_resnet", default_input_size=32)
def resnet20(num_classes: int = 1000) -> CifarResNet:
    """CIFAR ResNet-20: 3x3 blocks 16/32/64, option-A shortcuts, a small teacher (0.27 M params)."""
    return CifarResNet(3, num_classes)


@register_model(family="cifar_resnet", default_input_size=32)
def resnet56(num_classes: int = 1000) -> CifarResNet:
    """CIFAR ResNet-56: 3x3 blocks 16/32/64, option-A shortcuts, a deeper small teacher (0.85 M params)."""
    return CifarResNet(9, num_classes)
