"""Fake quantization: float tensors rounded to TFLite's int8 grid, with straight-through gradients.

``ActivationFakeQuant`` observes a tensor's range and rounds it to per-tensor int8.
During QAT the range is an exponential moving average of batch min/max (updated in
training mode until the observers are frozen); calibration (PTQ, and the start of
QAT) takes the plain min/max over the batches it sees. Before anything has been
observed the module passes values through, so a freshly prepared model computes in float.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from mobile_compress.quantization import scheme

EMA_CONSTANT = 0.01  # weight of a new batch in the moving-average range (as in TF and torch.ao QAT)


class ActivationFakeQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantization of one activation tensor.

    ``fixed`` gives constant (scale, zero_point), e.g. sigmoid's TFLite output scale.
    ``observing`` turns range updates on or off (QAT freezes them late in training).
    """

    def __init__(self, fixed: tuple[float, int] | None = None) -> None:
        super().__init__()
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self.fixed = fixed
        self.observing = True
        self.calibrating = False
        if fixed is not None:  # sigmoid's range is [0, 1) whatever the data
            scale, zero = fixed
            self.min_val.fill_((scheme.ACT_QMIN - zero) * scale)
            self.max_val.fill_((scheme.ACT_QMAX - zero) * scale)

    @property
    def initialized(self) -> bool:
        return bool(torch.isfinite(self.min_val)) and bool(torch.isfinite(self.max_val))

    def qparams(self) -> tuple[float, int]:
        """(scale, zero_point) as the .tflite stores them."""
        if self.fixed is not None:
            return float(self.fixed[0]), int(self.fixed[1])
        if not self.initialized:
            raise RuntimeError("this activation has not been observed yet; calibrate the model first")
        scale, zero = scheme.activation_qparams(self.min_val, self.max_val)
        return float(scale), int(zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed is None and self.observing and (self.training or self.calibrating):
            self._observe(x.detach())
        if not self.initialized:
            return x
        scale, zero = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero, scheme.ACT_QMIN, scheme.ACT_QMAX)

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min().float(), x.max().float()
        if not self.initialized:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        elif self.calibrating:
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
        else:
            self.min_val.add_(EMA_CONSTANT * (lo - self.min_val))
            self.max_val.add_(EMA_CONSTANT * (hi - self.max_val))

    def extra_repr(self) -> str:
        if not self.initialized:
            return "unobserved"
        scale, zero = self.qparams()
        return f"scale={scale:.6g}, zero_point={zero}"


def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization, gradients passed straight through."""
    scales = scheme.per_channel_scales(weight).to(weight.device)
    zeros = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scales, zeros, 0, scheme.WEIGHT_QMIN, scheme.WEIGHT_QMAX)


def activation_quantizers(model: nn.Module) -> Iterator[tuple[str, ActivationFakeQuant]]:
    for name, module in model.named_modules():
        if isinstance(module, ActivationFakeQuant):
            yield name, module


def set_observing(model: nn.Module, observing: bool) -> None:
    for _, fq in activation_quantizers(model):
        fq.observing = observing


@contextmanager
def calibrating(model: nn.Module) -> Iterator[None]:
    """Within the block, forward passes widen every observed range to the plain min/max seen."""
    quantizers = [fq for _, fq in activation_quantizers(model)]
    for fq in quantizers:
        fq.calibrating = True
    try:
        yield
    finally:
        for fq in quantizers:
            fq.calibrating = False
