"""A ShuffleNetV2 stage at 16 channels on 16x16 (C == H == W, as in pruned x0.5 and x1.5) converts exactly.

onnx2tf left each channel shuffle's output in NCHW order; at C == W the next unit's
``chunk(2, dim=1)`` split the width and the next strided depthwise Conv read a transposed
image, so the fp32 .tflite computed something else. ``onnx_rewrite`` turns those shuffles
into permutation Convs; this converts a tiny model end to end and checks the result.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from converters import ConvertConfig, convert
from mobile_compress.litert import interpreter
from models.shufflenet_v2 import InvertedResidual

pytestmark = pytest.mark.usefixtures("single_thread")


class TinyShuffleNet(nn.Module):
    """Stem to 16x16x16, two split units (chunk(2, dim=1) after a shuffle), a strided unit, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.units = nn.Sequential(InvertedResidual(16, 16, 1), InvertedResidual(16, 16, 1),
                                   InvertedResidual(16, 8, 2))  # 8x8x8 out: ambiguous too
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


def _whole_graph_in_one_delegate(path: Path) -> bool:
    """XNNPACK took every op: one DELEGATE node from the graph input to the graph output."""
    interp = interpreter(path, delegates=True)
    interp.allocate_tensors()
    delegated = [op for op in interp._get_ops_details() if op["op_name"] == "DELEGATE"]
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    return len(delegated) == 1 and inputs <= set(delegated[0]["inputs"]) and set(delegated[0]["outputs"]) == outputs


def test_shuffle_then_chunk_at_c_equal_h_equal_w_converts_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyShuffleNet().eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity, so every channel differs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    program = torch.export.export(model, (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    report = convert(ConvertConfig(source=str(tmp_path / "model.pt2"), out_dir=str(tmp_path / "out"),
                                   formats=("fp32", "int8"), calib="builtin", calib_samples=8, parity_samples=16,
                                   progress=False))
    assert report.graph_rewrites == {"channel shuffle": 3}
    fp32, int8 = report.artifacts
    assert fp32.format == "fp32" and fp32.passed, report.problems
    assert fp32.parity.max_abs_diff <= 1e-4 * fp32.parity.max_abs_reference
    assert fp32.parity.cosine_min > 0.999999
    for art in (fp32, int8):  # the shuffles are CONV_2D now: no layout shuffling left, all in XNNPACK
        assert "TRANSPOSE" not in art.ops and "RESHAPE" not in art.ops and art.ops["SPLIT"] == 2, art.ops
        assert _whole_graph_in_one_delegate(Path(art.path))
    assert int8.float_fallback == []
    assert int8.parity.cosine_min > 0.99
