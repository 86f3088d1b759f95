"""The ONNX rewrites we apply before onnx2tf keep the model's outputs (checked in ONNX Runtime)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from converters.onnx_export import simplify
from converters.onnx_rewrite import (ambiguous_channel_shuffles_to_conv, channel_pads_to_conv,
                                     decompose_hard_activations, maxpool_pads_to_zero_pads)
from models.cifar_resnet import PadShortcut
from models.shufflenet_v2 import InvertedResidual, channel_shuffle


def export(module: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """As the converter exports: torch's dynamo exporter, then onnxsim."""
    program = torch.onnx.export(module.eval(), (torch.randn(*shape),), dynamo=True, opset_version=18)
    return simplify(program.model_proto)[0]


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_hard_activations_become_xnnpack_friendly_add_and_mul():
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Hardswish(), nn.Conv2d(8, 8, 1), nn.Hardsigmoid())
    model = export(net, (1, 3, 6, 6))
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32) * 4
    before = run(model, x)
    assert decompose_hard_activations(model) == {"HardSwish": 1, "HardSigmoid": 1}
    onnx.checker.check_model(model)
    assert "HardSwish" not in ops(model) and "HardSigmoid" not in ops(model)
    np.testing.assert_allclose(run(model, x), before, rtol=1e-5, atol=1e-6)


def test_nonstandard_hardsigmoid_is_left_alone():
    from onnx import helper

    node = helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2, beta=0.5)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert decompose_hard_activations(model) == {"HardSwish": 0, "HardSigmoid": 0}
    assert ops(model) == ["HardSigmoid"]


@pytest.mark.parametrize("in_planes, out_planes, stride", [(16, 32, 2), (8, 16, 1)])
def test_option_a_channel_pad_becomes_an_exact_embedding_conv(in_planes, out_planes, stride):
    """C == H == W after subsampling is the shape onnx2tf got wrong; the rewrite must be exact."""
    model = export(PadShortcut(in_planes, out_planes, stride), (1, in_planes, 32, 32))
    x = np.random.default_rng(1).standard_normal((1, in_planes, 32, 32)).astype(np.float32)
    before = run(model, x)
    assert channel_pads_to_conv(model) == 1
    onnx.checker.check_model(model)
    assert "Pad" not in ops(model) and "Conv" in ops(model)
    np.testing.assert_array_equal(run(model, x), before)


def test_spatial_pads_are_not_touched():
    model = export(nn.ZeroPad2d(1), (1, 3, 4, 4))
    assert channel_pads_to_conv(model) == 0 and "Pad" in ops(model)


@pytest.mark.parametrize("pool, size", [(nn.MaxPool2d(3, 2, 1), 16), (nn.MaxPool2d(3, 2, ceil_mode=True), 14),
                                        (nn.MaxPool2d(3, 2, ceil_mode=True), 13)])
def test_padded_maxpool_after_relu_gets_an_exact_zero_pad(pool, size):
    """onnx2tf pads such pools with -3.4e38, which int8 calibration folds into a scale of 1e36."""
    model = export(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), pool), (1, 3, size, size))
    x = np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32)
    before = run(model, x)
    assert maxpool_pads_to_zero_pads(model) == 1
    onnx.checker.check_model(model)
    assert ops(model)[-2:] == ["Pad", "MaxPool"]
    np.testing.assert_array_equal(run(model, x), before)


def test_maxpool_of_a_signed_tensor_keeps_its_padding():
    model = export(nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, 1)), (1, 3, 8, 8))
    assert maxpool_pads_to_zero_pads(model) == 0 and "Pad" not in ops(model)


class Shuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


def test_shufflenet_units_at_c_equal_w_get_exact_permutation_convs():
    """Two stride-1 units at 16x16x16 (a pruned x0.5): each unit's channel shuffle becomes one Conv, and the
    second unit's Split now reads that Conv's output; onnx2tf split the width of the Reshape's output."""
    model = export(nn.Sequential(InvertedResidual(16, 16, 1), InvertedResidual(16, 16, 1)), (1, 16, 16, 16))
    x = np.random.default_rng(3).standard_normal((1, 16, 16, 16)).astype(np.float32)
    before = run(model, x)
    assert ops(model).count("Transpose") == 2 and ops(model).count("Split") == 2
    assert ambiguous_channel_shuffles_to_conv(model) == 2
    onnx.checker.check_model(model, full_check=True)
    assert "Transpose" not in ops(model) and "Reshape" not in ops(model) and ops(model).count("Split") == 2
    assert {i.name for i in model.graph.initializer} <= {name for n in model.graph.node for name in n.input}
    np.testing.assert_array_equal(run(model, x), before)


@pytest.mark.parametrize("groups, shape", [(4, (1, 8, 8, 5)), (2, (1, 12, 3, 12))])
def test_other_group_counts_and_c_equal_w_only_are_exact(groups, shape):
    model = export(Shuffle(groups), shape)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    before = run(model, x)
    assert ambiguous_channel_shuffles_to_conv(model) == 1 and ops(model) == ["Conv"]
    np.testing.assert_array_equal(run(model, x), before)


@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (1, 48, 16, 16)])
def test_unambiguous_shuffles_and_splits_are_left_alone(shape):
    model = export(InvertedResidual(shape[1], shape[1], 1), shape)
    before = ops(model)
    assert ambiguous_channel_shuffles_to_conv(model) == 0 and ops(model) == before
    assert "Split" in before and "Transpose" in before


def test_a_dynamic_batch_does_not_stop_the_shuffle_rewrite():
    net = nn.Sequential(InvertedResidual(16, 16, 1)).eval()
    program = torch.onnx.export(net, (torch.randn(2, 16, 16, 16),), dynamo=True, opset_version=18,
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    model = simplify(program.model_proto)[0]
    x = np.random.default_rng(5).standard_normal((3, 16, 16, 16)).astype(np.float32)
    before = run(model, x)
    assert ambiguous_channel_shuffles_to_conv(model) == 1
    np.testing.assert_array_equal(run(model, x), before)
