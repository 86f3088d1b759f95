"""TFLite's int8 scheme, in one place: what its kernels store and how scales follow from ranges.

* activations: per-tensor asymmetric int8 in [-128, 127], real = scale * (q - zero_point),
  the range always containing 0 so that zero padding and ReLU are exact;
* weights: per-output-channel symmetric int8 in [-127, 127] (narrow range, zero point 0),
  scale = max|w| / 127, as TFLite's converter computes it;
* bias: int32 with scale = input scale * weight scale (computed by TFLite itself);
* LOGISTIC (sigmoid) outputs: fixed scale 1/256, zero point -128.
"""
from __future__ import annotations

import torch

ACT_QMIN, ACT_QMAX = -128, 127
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
SIGMOID_SCALE, SIGMOID_ZERO_POINT = 1.0 / 256.0, -128
_MIN_SCALE = 1e-8  # a constant tensor (range 0) still needs a usable scale


def activation_qparams(min_val: torch.Tensor, max_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point) of a per-tensor asymmetric int8 tensor covering [min_val, max_val] and 0."""
    lo = torch.clamp(min_val, max=0.0).double()
    hi = torch.clamp(max_val, min=0.0).double()
    scale = torch.clamp((hi - lo) / float(ACT_QMAX - ACT_QMIN), min=_MIN_SCALE)
    zero_point = torch.clamp(torch.round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX)
    return scale.float(), zero_point.to(torch.int32)


def per_channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric scales (axis 0), float32 like TFLite's."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    return torch.clamp(flat.abs().amax(dim=1) / float(WEIGHT_QMAX), min=_MIN_SCALE).float()
