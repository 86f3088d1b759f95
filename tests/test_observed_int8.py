"""Which ranges an int8 artifact gets (converters.observed_int8), without converting anything."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from converters.observed_int8 import choose_twin, observed_twin
from converters.source import Source
from mobile_compress.errors import UserError
from mobile_compress.quantization import activation_ranges


class Branchy(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.sum() > 0 else -y


def _source(kind: str, module: nn.Module | None = None) -> Source:
    return Source(kind, Path(f"model.{kind}"), (8, 8), 3, module=module)


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 3, 8, 8)).astype(np.float32)


def test_the_twin_observes_the_calibration_images_and_leaves_the_model_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = observed_twin(model, _images())
    ranges = activation_ranges(twin)
    assert ranges and all(scale > 0 for scale, _ in ranges.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # not folded in the caller's model


def test_auto_observes_checkpoints_and_leaves_other_sources_to_onnx2tf() -> None:
    twin, note = choose_twin("auto", _source("checkpoint", nn.Sequential(nn.Conv2d(3, 4, 3))), _images(), 1)
    assert twin is not None and note == "observers: min/max over 6 calibration images (post-training quantization)"
    for kind in ("onnx", "pt2"):
        twin, note = choose_twin("auto", _source(kind), _images(), 1)
        assert twin is None and note.startswith(f"onnx2tf calibration ({kind} source")
    twin, note = choose_twin("onnx2tf", _source("checkpoint", nn.Conv2d(3, 4, 3)), _images(), 1)
    assert twin is None and note == "onnx2tf calibration (asked for)"


def test_an_untraceable_model_falls_back_under_auto_and_fails_when_observers_are_asked_for() -> None:
    twin, note = choose_twin("auto", _source("checkpoint", Branchy()), _images(), 1)
    assert twin is None and note.startswith("onnx2tf calibration (our observers could not trace the model: "
                                            "cannot trace Branchy")
    with pytest.raises(UserError, match="cannot trace Branchy"):
        choose_twin("observers", _source("checkpoint", Branchy()), _images(), 1)
    with pytest.raises(UserError, match="needs a checkpoint") as err:
        choose_twin("observers", _source("onnx"), _images(), 1)
    assert "--int8-ranges onnx2tf" in err.value.hint
