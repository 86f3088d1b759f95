"""A zoo architecture as a convertible checkpoint, without training it.

Latency, size and convertibility depend on the architecture, not on trained weights, so
the conversion coverage tests and the zoo latency benchmark start from here. Fresh
weights alone make degenerate activations (a new MobileNetV3's logits are ~1e-9, and its
int8 scales collapse), so BatchNorm statistics are re-estimated on real images first.
Then the classifier is fitted as a linear probe (ridge regression on the network's own
features of the same images): its logits separate the classes the way a trained model's
do, so parity figures such as top-1 agreement mean something, instead of comparing
near-equal logits whose argmax any rounding flips.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

import models
from mobile_compress.data import open_dataset
from mobile_compress.training import CheckpointMeta, save_checkpoint
from mobile_compress.training.bn_recalibration import recalibrate_batchnorm


def zoo_checkpoint(name: str, out_dir: str | Path, *, num_classes: int = 10, data: str = "builtin",
                   seed: int = 0, calibration_images: int = 64, **options: Any) -> Path:
    """Save ``models.create(name, **options)`` with BN statistics from ``data`` at the model's input size."""
    size = models.default_input_size(name, **options)
    torch.manual_seed(seed)
    model = models.create(name, num_classes=num_classes, **options)
    dataset = open_dataset(data, "train", image_size=size, train=False)
    step = max(1, len(dataset) // calibration_images)
    images = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(0, len(dataset), step)][:calibration_images])
    recalibrate_batchnorm(model, images.split(16))
    labels = torch.as_tensor([int(dataset[i][1]) for i in range(0, len(dataset), step)][:calibration_images])
    fit_linear_probe(model, images, labels % num_classes, num_classes)
    meta = CheckpointMeta(arch=name, options=options, num_classes=num_classes, input_size=size,
                          normalization=dataset.normalization, labels=list(dataset.classes)[:num_classes]
                          if len(dataset.classes) == num_classes else [],
                          extra={"data": data, "weights": "fresh initialisation, BatchNorm statistics from data"})
    return save_checkpoint(Path(out_dir), model, meta)


@torch.no_grad()
def fit_linear_probe(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ridge: float = 0.1, margin: float = 8.0) -> None:
    """Set the last Linear (or 1x1 Conv) layer to a ridge-regression probe of its input features.

    Targets are ``margin`` for the true class and 0 elsewhere, so logits span about ``margin``.
    """
    layer = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model.eval()
        for chunk in images.split(16):
            model(chunk)
    finally:
        handle.remove()
    features = torch.cat([f.flatten(2).mean(2) if f.dim() == 4 else f for f in captured]).double()
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], 1)
    targets = torch.nn.functional.one_hot(labels, num_classes).double() * margin
    gram = design.T @ design + ridge * len(design) * torch.eye(design.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, design.T @ targets)
    weight, bias = solution[:-1].T.float(), solution[-1].float()
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    if layer.bias is not None:
        layer.bias.copy_(bias)
