"""Re-estimate BatchNorm running statistics from data, with the weights left alone.

Needed whenever a network's activations no longer match its stored statistics: after
pruning or factorisation, and for untrained networks (a freshly initialised
MobileNetV3's logits are ~1e-9, which makes int8 scales and parity checks meaningless).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running mean/var and average them over ``batches`` (equal weight per batch).

    Returns the number of BatchNorm layers updated. The model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, momentum in saved.items():
            m.momentum = momentum
        model.eval()
    return len(norms)
