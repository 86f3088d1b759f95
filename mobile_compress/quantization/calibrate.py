"""Calibration: observe activation ranges on real images (the whole of PTQ, and the start of QAT)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mobile_compress.quantization.fake_quant import calibrating


@torch.no_grad()
def calibrate(model: nn.Module, data: Dataset, images: int = 512, batch_size: int = 64) -> int:
    """Widen every activation range to the min/max over ``images`` images spread over ``data``; returns the count.

    Runs in eval mode, so BatchNorm is already folded with its running statistics,
    exactly as TFLite runs it.
    """
    n = len(data)  # type: ignore[arg-type]
    take = min(images, n)
    index = torch.linspace(0, n - 1, take).round().long().unique().tolist()
    loader = DataLoader(Subset(data, index), batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    try:
        with calibrating(model):
            for inputs, _ in loader:
                model(inputs)
    finally:
        model.train(was_training)
    return len(index)
