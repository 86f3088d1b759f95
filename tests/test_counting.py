"""Parameter, MAC and size counting (mobile_compress.counting)."""
from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from torch import nn

import models
from mobile_compress.counting import (
    ModelStats,
    count_macs,
    count_parameters,
    format_count,
    model_stats,
    serialized_size_bytes,
)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*10*10 outputs x 3*3*3 = 21_600 MACs
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False),  # 16*5*5 x 2*3*3 = 7_200
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise: 16*5*5 x 1*3*3 = 3_600
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),  # 80
    )


TINY_MACS = 21_600 + 7_200 + 3_600 + 80
TINY_PARAMS = (8 * 27 + 8) + 16 + (16 * 2 * 9) + (16 * 9 + 16) + (16 * 5 + 5)


def test_count_parameters_tiny_and_trainable_only():
    net = tiny_net()
    assert count_parameters(net) == TINY_PARAMS
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == TINY_PARAMS - (8 * 27 + 8)
    assert count_parameters(net) == TINY_PARAMS


def test_count_parameters_counts_shared_weights_once():
    layer = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(layer, layer)) == 20


def test_count_macs_tiny_int_and_chw_input():
    net = tiny_net()
    assert count_macs(net, 10) == TINY_MACS
    assert count_macs(net, (3, 10, 10)) == TINY_MACS
    # Non-square input: every spatial count scales with H*W.
    assert count_macs(net, (3, 10, 20)) == 2 * (21_600 + 7_200 + 3_600) + 80


def test_count_macs_grouped_conv_is_groups_aware():
    dense = nn.Conv2d(32, 64, 3, padding=1, bias=False)
    grouped = nn.Conv2d(32, 64, 3, padding=1, groups=8, bias=False)
    depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    size = (32, 7, 7)
    assert count_macs(dense, size) == 64 * 49 * 32 * 9
    assert count_macs(grouped, size) == 64 * 49 * 4 * 9
    assert count_macs(depthwise, size) == 32 * 49 * 9


def test_count_macs_other_layers():
    assert count_macs(nn.Conv2d(1, 4, 1), (1, 5, 5)) == 100
    # Transposed conv: each input element meets out_channels/groups * kernel weights.
    assert count_macs(nn.ConvTranspose2d(4, 6, 3, stride=2), (4, 5, 5)) == 4 * 25 * 6 * 9
    # Layers without convs or linears cost nothing.
    assert count_macs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), 8) == 0

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(6, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x.flatten(2).transpose(1, 2))  # (1, H*W, C) tokens

    assert count_macs(Tokens(), (6, 4, 4)) == 16 * 6 * 10


def test_count_macs_restores_modes_and_leaves_no_trace():
    net = tiny_net()
    net.train()
    net[1].eval()  # mixed modes must come back exactly
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, 10)
    assert net.training and net[0].training and not net[1].training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm statistics untouched
    assert all(not m._forward_hooks for m in net.modules())
    net.eval()
    count_macs(net, 10)
    assert not net.training


def test_count_macs_restores_modes_after_an_error():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(5, 2))  # shapes do not chain
    net.train()
    with pytest.raises(RuntimeError):
        count_macs(net, 8)
    assert net.training and all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("bad", [0, -3, (3, 32), (3, 0, 32), "224", 2.5, True, (3, 32.0, 32)])
def test_bad_input_size(bad):
    with pytest.raises(ValueError):
        count_macs(tiny_net(), bad)


# Published MACs at 224x224 (torchvision model docs "GFLOPS", which count multiply-adds).
PUBLISHED_MACS = {
    "mobilenet_v2": 300.8e6,
    "shufflenet_v2_x1_0": 144.9e6,
    "squeezenet1_1": 349.2e6,
    "mobilenet_v3_small": 56.5e6,
    "resnet18": 1.814e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_match_published_figures(name):
    macs = count_macs(models.create(name), 224)
    assert macs == pytest.approx(PUBLISHED_MACS[name], rel=0.01)


def test_small_input_macs_are_cheaper_than_imagenet_but_not_tiny():
    # small_input at 32x32 downsamples 8x, not 32x: MACs sit between 224 and plain 32.
    for name in ("mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1"):
        imagenet = count_macs(models.create(name), 224)
        plain32 = count_macs(models.create(name), 32)
        small32 = count_macs(models.create(name, small_input=True), 32)
        assert plain32 < small32 < imagenet, name


def test_serialized_size_matches_torch_save():
    net = tiny_net()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    assert serialized_size_bytes(net) == len(buffer.getvalue())
    model = models.create("squeezenet1_1")
    size = serialized_size_bytes(model)
    assert 4 * count_parameters(model) < size < 4 * count_parameters(model) * 1.1


def test_model_stats():
    net = tiny_net()
    stats = model_stats(net, 10)
    assert stats == ModelStats(
        params=TINY_PARAMS, macs=TINY_MACS, size_bytes=serialized_size_bytes(net), input_size=(3, 10, 10)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.params = 0  # type: ignore[misc]
    assert model_stats(net, (3, 10, 20)).input_size == (3, 10, 20)


@pytest.mark.parametrize(
    "value,text",
    [
        (3_504_872, "3.50 M"),
        (1.814e9, "1.81 G"),
        (1_814_073_344, "1.81 G"),
        (56_510_400, "56.51 M"),
        (269_722, "269.72 K"),
        (1_000, "1.00 K"),
        (999_999, "1.00 M"),
        (999, "999"),
        (0, "0"),
        (2.5e12, "2.50 T"),
        (-1_500, "-1.50 K"),
    ],
)
def test_format_count(value, text):
    assert format_count(value) == text
