"""A zoo architecture as a convertible checkpoint, without training it.

Latency, size and convertibility depend on the architecture, not on trained weights, so
the conversion coverage tests and the zoo latency benchmark start from here. Fresh
weights alone make degenerate activations (a new MobileNetV3's logits are ~1e-9, and its
int8 scales collapse), so BatchNorm statistics are re-estimated on real images first.
Then the classifier is fitted as a linear probe (ridge regression on the network's own
features of the same images): its logits separate the classes the way a trained model's
do, so parity figures such as top-1 agreement mean something, instead of comparing
near-equal logits whose argmax any rounding flips.

A probe on fresh features still separates classes poorly (a fresh MobileNetV3-Small at 224
scores 16% on the digits, and int8 rounding flips 20% of its answers), so the fp16 and int8
parity bars need ``train_epochs``: a short AdamW fit of the whole network on the data, after
which the features, and the logit margins the bars measure, are a trained model's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

import models
from mobile_compress.data import open_dataset
from torch.utils.data import Subset

from mobile_compress.training import CheckpointMeta, TrainConfig, Trainer, save_checkpoint
from mobile_compress.training.bn_recalibration import recalibrate_batchnorm


def zoo_checkpoint(name: str, out_dir: str | Path, *, num_classes: int = 10, data: str = "builtin",
                   seed: int = 0, calibration_images: int = 64, train_epochs: int = 0, train_images: int = 320,
                   **options: Any) -> Path:
    """Save ``models.create(name, **options)`` with BN statistics from ``data`` at the model's input size.

    With ``train_epochs`` the whole network is first fitted for that many epochs (twice as many for a
    network without BatchNorm, see ``fit_briefly``) on ``train_images``
    evenly spread training images; otherwise the classifier is a linear probe of fresh features.
    """
    size = models.default_input_size(name, **options)
    torch.manual_seed(seed)
    model = models.create(name, num_classes=num_classes, **options)
    dataset = open_dataset(data, "train", image_size=size, train=False)
    if train_epochs:
        train_epochs = fit_briefly(model, Subset(dataset, evenly_spread(len(dataset), train_images)), train_epochs,
                                   seed)
        model.cpu()  # the Trainer may have fitted it on a GPU; what follows runs on the CPU images
    picked = evenly_spread(len(dataset), calibration_images)
    images = torch.stack([torch.as_tensor(dataset[i][0]) for i in picked])
    recalibrate_batchnorm(model, images.split(16))
    if not train_epochs:
        labels = torch.as_tensor([int(dataset[i][1]) for i in picked])
        fit_linear_probe(model, images, labels % num_classes, num_classes)
    weights = (f"trained {train_epochs} epochs on {min(train_images, len(dataset))} images of {data}" if train_epochs
               else "fresh initialisation and a linear-probe classifier")
    meta = CheckpointMeta(arch=name, options=options, num_classes=num_classes, input_size=size,
                          normalization=dataset.normalization, labels=list(dataset.classes)[:num_classes]
                          if len(dataset.classes) == num_classes else [],
                          extra={"data": data, "weights": weights + ", BatchNorm statistics from data"})
    return save_checkpoint(Path(out_dir), model, meta)


def evenly_spread(length: int, count: int) -> list[int]:
    """``count`` indices spread over ``range(length)`` (all of them when ``count >= length``)."""
    step = max(1, length // count)
    return list(range(0, length, step))[:count]


# AdamW's rate for the short fit. A network without BatchNorm (SqueezeNet) needs the lower one,
# and more epochs at it: measured on the digits, SqueezeNet 1.1 with the small-input stem ends at
# 9.7% (its ReLUs die) at 1e-3 in 8 epochs; at 3e-4 it ended at 85.5% in one run and at 61-70% in
# three others (8 epochs at 6e-4 too), where int8 rounding flips 6% of its answers; 16 epochs at
# 3e-4 reach 98%, and int8 then agrees on every parity image.
FIT_LR = 1e-3
FIT_LR_WITHOUT_BATCHNORM = 3e-4
FIT_EPOCHS_FACTOR_WITHOUT_BATCHNORM = 2


def fit_briefly(model: nn.Module, images: Subset, epochs: int, seed: int) -> int:
    """A short AdamW fit in bf16: enough for class-separating features, not for accuracy records.

    Returns the epochs it ran (more than ``epochs`` for a network without BatchNorm)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    epochs = epochs if has_bn else epochs * FIT_EPOCHS_FACTOR_WITHOUT_BATCHNORM
    config = TrainConfig(epochs=epochs, batch_size=32, optimizer="adamw",
                         lr=FIT_LR if has_bn else FIT_LR_WITHOUT_BATCHNORM, weight_decay=0.0, warmup_epochs=0.0,
                         precision="bf16", seed=seed, progress=False)
    Trainer(model, config, images).fit()
    return epochs


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
