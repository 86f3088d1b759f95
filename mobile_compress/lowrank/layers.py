"""The modules that replace a factorised layer, and what they cost.

A factorised layer is a ``FactorizedLayer`` (an ``nn.Sequential`` with named
children) in the original layer's place, so state_dict keys stay readable::

    svd      features.3.conv.2.reduce.weight   (linear/1x1 conv: in -> r)
             features.3.conv.2.expand.weight   (r -> out, with the original bias)
    tucker2  layer1.0.conv1.reduce.weight      (1x1 conv: in -> r_in; left out when r_in == in)
             layer1.0.conv1.core.weight        (kxk conv r_in -> r_out, original stride/padding/dilation)
             layer1.0.conv1.expand.weight      (1x1 conv: r_out -> out, bias; left out when r_out == out)

Ranks are recorded in data-flow order: ``[r]`` for svd, ``[r_in, r_out]`` for tucker2.
The same ``build`` serves factorisation (then ``fill``) and rebuilding a checkpoint
(then ``load_state_dict``), so both always produce the same structure.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from mobile_compress.lowrank.decompose import SvdFactors, TuckerFactors

METHODS = ("svd", "tucker2")


class FactorizedLayer(nn.Sequential):
    """A linear or conv layer replaced by a chain of smaller ones (see the module docstring)."""

    def __init__(self, method: str, ranks: list[int], layers: "OrderedDict[str, nn.Module]") -> None:
        super().__init__(layers)
        self.method = method
        self.ranks = list(ranks)

    def extra_repr(self) -> str:
        return f"method={self.method}, ranks={self.ranks}"


@dataclass(frozen=True)
class LayerShape:
    """What decides a layer's cost: channels, kernel, and how many positions it runs at.

    ``in_positions`` / ``out_positions`` are the spatial sizes (H*W, summed over calls)
    of its input and output for one image; 1 for a linear layer on a vector.
    """

    kind: str  # "linear" or "conv"
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    in_positions: int
    out_positions: int
    bias: bool

    @property
    def kernel_area(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def method(self) -> str:
        return "svd" if self.kernel_area == 1 else "tucker2"

    @property
    def full_ranks(self) -> list[int]:
        """The ranks at which nothing is truncated (svd: min(in, out); tucker2: [in, out])."""
        if self.method == "svd":
            return [min(self.in_channels, self.out_channels)]
        return [self.in_channels, self.out_channels]

    def original_cost(self) -> tuple[int, int]:
        """(parameters, MACs) of the layer as it is."""
        weights = self.in_channels * self.out_channels * self.kernel_area
        return weights + self.out_channels * self.bias, weights * self.out_positions

    def factorized_cost(self, ranks: list[int]) -> tuple[int, int]:
        """(parameters, MACs) of the layer factorised at ``ranks`` (same counting as ``counting.py``)."""
        bias = self.out_channels * self.bias
        if self.method == "svd":
            (r,) = ranks
            params = r * (self.in_channels + self.out_channels)
            return params + bias, params * self.out_positions
        r_in, r_out = ranks
        params = macs = 0
        if r_in < self.in_channels:  # reduce runs before the kxk conv, at the input resolution
            params += self.in_channels * r_in
            macs += self.in_channels * r_in * self.in_positions
        core = r_in * r_out * self.kernel_area
        params, macs = params + core, macs + core * self.out_positions
        if r_out < self.out_channels:
            params += r_out * self.out_channels
            macs += r_out * self.out_channels * self.out_positions
        return params + bias, macs


def shape_of(module: nn.Module, in_positions: int, out_positions: int) -> LayerShape:
    if isinstance(module, nn.Linear):
        return LayerShape("linear", module.in_features, module.out_features, (1, 1), in_positions, out_positions,
                          module.bias is not None)
    assert isinstance(module, nn.Conv2d)
    return LayerShape("conv", module.in_channels, module.out_channels, tuple(module.kernel_size), in_positions,
                      out_positions, module.bias is not None)


def check_ranks(shape: LayerShape, method: str, ranks: list[int]) -> None:
    """ValueError unless ``ranks`` fit the layer and ``method`` is the one its kernel calls for."""
    if method != shape.method:
        raise ValueError(f"method {method!r} does not fit a {shape.kernel[0]}x{shape.kernel[1]} {shape.kind} layer "
                         f"(expected {shape.method!r})")
    full = shape.full_ranks
    if (not isinstance(ranks, (list, tuple)) or len(ranks) != len(full)
            or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks)):
        raise ValueError(f"ranks {ranks!r} must be {len(full)} integer(s) for {method}")
    for r, top in zip(ranks, full):
        if not 1 <= r <= top:
            raise ValueError(f"rank {r} is outside 1..{top} for this layer")


def build(original: nn.Module, method: str, ranks: list[int]) -> FactorizedLayer:
    """The replacement for ``original`` at ``ranks``, with fresh weights (``fill`` or a state_dict sets them)."""
    shape = shape_of(original, 1, 1)
    check_ranks(shape, method, list(ranks))
    like = {"device": original.weight.device, "dtype": original.weight.dtype}
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if isinstance(original, nn.Linear):
        (r,) = ranks
        layers["reduce"] = nn.Linear(shape.in_channels, r, bias=False, **like)
        layers["expand"] = nn.Linear(r, shape.out_channels, bias=shape.bias, **like)
    elif method == "svd":
        (r,) = ranks
        layers["reduce"] = nn.Conv2d(shape.in_channels, r, 1, original.stride, original.padding, original.dilation,
                                     bias=False, padding_mode=original.padding_mode, **like)
        layers["expand"] = nn.Conv2d(r, shape.out_channels, 1, bias=shape.bias, **like)
    else:
        r_in, r_out = ranks
        if r_in < shape.in_channels:
            layers["reduce"] = nn.Conv2d(shape.in_channels, r_in, 1, bias=False, **like)
        expand = r_out < shape.out_channels
        layers["core"] = nn.Conv2d(r_in, r_out, original.kernel_size, original.stride, original.padding,
                                   original.dilation, bias=shape.bias and not expand,
                                   padding_mode=original.padding_mode, **like)
        if expand:
            layers["expand"] = nn.Conv2d(r_out, shape.out_channels, 1, bias=shape.bias, **like)
    layer = FactorizedLayer(method, list(ranks), layers)
    layer.train(original.training)
    return layer


@torch.no_grad()
def fill(layer: FactorizedLayer, original: nn.Module, factors: SvdFactors | TuckerFactors) -> None:
    """Copy the factors (and the original bias) into ``layer``, built by ``build`` for them."""
    def put(module: nn.Module, weight: torch.Tensor) -> None:
        module.weight.copy_(weight.reshape(module.weight.shape).to(module.weight.dtype))

    if isinstance(factors, SvdFactors):
        put(layer.reduce, factors.first)
        put(layer.expand, factors.second)
        last = layer.expand
    else:
        core = factors.core  # (r_out, r_in, kh, kw)
        if "reduce" in layer._modules:
            put(layer.reduce, factors.in_factor.T)
        else:  # the input factor is square and orthogonal: fold it into the core
            core = torch.einsum("abhw,ib->aihw", core, factors.in_factor)
        if "expand" in layer._modules:
            put(layer.expand, factors.out_factor)
            last = layer.expand
        else:
            core = torch.einsum("abhw,oa->obhw", core, factors.out_factor)
            last = layer.core
        put(layer.core, core)
    if original.bias is not None:
        last.bias.copy_(original.bias)


def kernel_text(shape: LayerShape) -> str:
    """``64x32x3x3`` (conv) or ``10x64`` (linear): the weight's shape as people read it."""
    if shape.kind == "linear":
        return f"{shape.out_channels}x{shape.in_channels}"
    return f"{shape.out_channels}x{shape.in_channels}x{shape.kernel[0]}x{shape.kernel[1]}"


__all__ = ["FactorizedLayer", "LayerShape", "METHODS", "build", "check_ranks", "fill", "kernel_text", "shape_of"]
