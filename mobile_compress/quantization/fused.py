"""Conv(+BatchNorm)(+ReLU/ReLU6) and Linear(+ReLU/ReLU6) as TFLite runs them: one int8 op.

TFLite folds BatchNorm into the conv's weights and bias and fuses ReLU/ReLU6 into
the op, so the quantized weights are the *folded* ones. ``QConv`` simulates exactly
that. While BatchNorm still learns (before the freeze), it uses the folding of
Krishnamoorthi (2018) / torch.ao: the conv runs with weights folded by the running
statistics and quantized, its output is scaled back and normalised with the batch
statistics, so the statistics keep tracking the data; after the freeze (and in eval
mode) the op is the one TFLite runs: quantized folded weights, folded bias, activation.

The bias is rounded as TFLite stores it: int32 in units of input scale x weight scale
(``input_quant`` is the quantizer of the layer's input, set by ``prepare``).

A hardsigmoid after a conv (squeeze-excitation) runs in TFLite as ``relu6(conv + 3) * (1/6)``:
the ``+ 3`` folds into the conv's bias (``post_affine``), ReLU6 fuses into it, and the
``* (1/6)`` is a MUL with a scale of its own (``MulConstant``); XNNPACK runs all of it
in int8. Hardswish runs as ``(x * (1/6)) * relu6(x + 3)`` (``DecomposedHardswish``),
the form the converters hand to TFLite, each piece with its own int8 scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobile_compress.quantization.fake_quant import fake_quant_weight

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def _quantized_bias(bias: torch.Tensor, weight: torch.Tensor, input_quant: nn.Module | None) -> torch.Tensor:
    """``bias`` on TFLite's int32 grid (scale = input scale x per-channel weight scale), straight-through."""
    if input_quant is None or not input_quant.initialized:
        return bias
    from mobile_compress.quantization.scheme import per_channel_scales

    step = input_quant.qparams()[0] * per_channel_scales(weight).to(bias.device)
    return bias + (torch.round(bias / step) * step - bias).detach()


def _activate(x: torch.Tensor, kind: str | None) -> torch.Tensor:
    if kind == "relu":
        return F.relu(x)
    if kind == "relu6":
        return F.relu6(x)
    return x


class QConv(nn.Module):
    """A conv with its BatchNorm folded in and its activation fused, weights fake-quantized per channel."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, activation: str | None,
                 post_affine: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.activation = activation
        self.post_affine = post_affine
        self.bn_frozen = False
        object.__setattr__(self, "input_quant", None)  # a reference, not a child module (set by prepare)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) with BatchNorm's running statistics (and ``post_affine``) folded in, before quantization."""
        conv, bn = self.conv, self.bn
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device)
        weight = conv.weight
        if bn is not None:
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = conv.weight * factor.reshape(-1, 1, 1, 1)
            bias = bn.bias + (bias - bn.running_mean) * factor
        if self.post_affine is not None:
            scale, shift = self.post_affine
            weight, bias = weight * scale, bias * scale + shift
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        if bn is not None and self.training and not self.bn_frozen:
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            scale, shift = self.post_affine or (1.0, 0.0)
            weight = fake_quant_weight(conv.weight * (factor * scale).reshape(-1, 1, 1, 1))
            y = self._conv(x, weight, None) / (factor * scale).reshape(1, -1, 1, 1)
            if conv.bias is not None:
                y = y + conv.bias.reshape(1, -1, 1, 1)
            return _activate(bn(y) * scale + shift, self.activation)
        weight, bias = self.folded()
        return _activate(self._conv(x, fake_quant_weight(weight), _quantized_bias(bias, weight, self.input_quant)),
                         self.activation)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)

    def to_float(self) -> nn.Module:
        """The op TFLite runs, as plain layers: conv with quantized folded weights and folded bias, then activation."""
        c = self.conv
        weight, bias = self.folded()
        plain = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                          bias=True, padding_mode=c.padding_mode)
        with torch.no_grad():
            plain.weight.copy_(fake_quant_weight(weight))
            plain.bias.copy_(_quantized_bias(bias, weight, self.input_quant))
        return plain if self.activation is None else nn.Sequential(plain, ACTIVATIONS[self.activation]())


class QLinear(nn.Module):
    """A fully-connected layer with fake-quantized per-channel weights and a fused activation."""

    def __init__(self, linear: nn.Linear, activation: str | None) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        object.__setattr__(self, "input_quant", None)  # a reference, not a child module (set by prepare)

    def _bias(self) -> torch.Tensor | None:
        lin = self.linear
        return None if lin.bias is None else _quantized_bias(lin.bias, lin.weight, self.input_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activate(F.linear(x, fake_quant_weight(self.linear.weight), self._bias()), self.activation)

    def to_float(self) -> nn.Module:
        lin = self.linear
        plain = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(fake_quant_weight(lin.weight))
            if lin.bias is not None:
                plain.bias.copy_(self._bias())
        return plain if self.activation is None else nn.Sequential(plain, ACTIVATIONS[self.activation]())


class MulConstant(nn.Module):
    """``x * factor``: TFLite's MUL by a constant, an op with an output scale of its own."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}"


class DecomposedHardswish(nn.Module):
    """``(x * (1/6)) * relu6(x + 3)`` with the int8 scales of its two inner ops (the output's is outside).

    This order is the one TFLite's converter does not fuse back into HARD_SWISH, which
    XNNPACK cannot run in int8.
    """

    def __init__(self) -> None:
        super().__init__()
        from mobile_compress.quantization.fake_quant import ActivationFakeQuant

        self.sixth_quant = ActivationFakeQuant()
        self.relu6_quant = ActivationFakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sixth_quant(x * (1.0 / 6.0)) * self.relu6_quant(F.relu6(x + 3.0))
