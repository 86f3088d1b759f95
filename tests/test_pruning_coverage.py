"""Coverage of the whole zoo (slow): every model prunes to 30%, 50% and 70% fewer MACs, still
runs, matches its silenced original, rebuilds from its checkpoint, and converts to TFLite with
the converters' parity check passing."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models
from converters import ConvertConfig, convert
from mobile_compress.counting import count_macs
from mobile_compress.pruning import PruneConfig, prune
from mobile_compress.data import open_dataset
from mobile_compress.training import CheckpointMeta, load_checkpoint, save_checkpoint
from mobile_compress.training.bn_recalibration import recalibrate_batchnorm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


def options(name: str) -> dict:
    return {"small_input": True} if "small_input" in models.spec(name).options else {}


def multiple_for(name: str, fraction: float) -> int:
    # CIFAR ResNets keep their option-A residual streams, so 70% fewer MACs needs inner widths below 8.
    return 4 if models.spec(name).family == "cifar_resnet" and fraction < 0.5 else 8


@pytest.mark.parametrize("fraction", [0.7, 0.5, 0.3])
@pytest.mark.parametrize("name", models.names())
def test_every_zoo_model_prunes_at_each_target(name: str, fraction: float) -> None:
    model = models.create(name, num_classes=10, **options(name)).eval()
    result = prune(model, PruneConfig(target=f"macs={fraction}", multiple=multiple_for(name, fraction)), 32)
    assert count_macs(result.model, 32) <= fraction * count_macs(model, 32)
    assert result.verify_error is not None  # checked against the silenced original inside prune
    with torch.no_grad():
        assert result.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# Pruned ShuffleNetV2 x0.5 and x1.5 reach 16 channels at 16x16 (C == H == W), where onnx2tf used to
# mis-axis the ops after each channel shuffle; converters.onnx_rewrite.ambiguous_channel_shuffles_to_conv.
@pytest.mark.parametrize("name, fraction", [pytest.param(name, fraction, id=f"{name}-{fraction}")
                                            for name in models.names() for fraction in (0.7, 0.5, 0.3)])
def test_every_pruned_zoo_model_converts_and_passes_parity(tmp_path: Path, name: str, fraction: float) -> None:
    model = models.create(name, num_classes=10, **options(name)).eval()
    # Real activation ranges: with fresh BatchNorm statistics the logits are ~0.03 wide and the
    # relative fp32 bar measures float rounding, not the conversion.
    images = open_dataset("builtin", "train", image_size=32, train=False)
    recalibrate_batchnorm(model, [torch.stack([torch.as_tensor(images[i][0]) for i in range(j, j + 16)])
                                  for j in range(0, 64, 16)])
    result = prune(model, PruneConfig(target=f"macs={fraction}", multiple=multiple_for(name, fraction)), 32)
    meta = CheckpointMeta(arch=name, num_classes=10, input_size=32, options=options(name),
                          normalization={"mean": [0.5] * 3, "std": [0.25] * 3}, transforms=[result.transform()])
    save_checkpoint(tmp_path / "ck", result.model, meta)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert count_macs(loaded, 32) == count_macs(result.model, 32)
    report = convert(ConvertConfig(source=str(tmp_path / "ck"), out_dir=str(tmp_path / "out"), formats=("fp32",),
                                   calib="builtin", calib_samples=8, parity_samples=16, progress=False))
    assert report.passed, report.problems
