"""From the fake-quant model to its integer graph: the float graph TFLite converts, and the int8 parameters
written into the .tflite afterwards.

``build_integer_graph(model)`` gives the converters all of it at once (``IntegerGraph``): the
graph's module (every fused op a plain conv or linear layer holding the folded weights already on
the int8 grid, so TFLite's own per-channel weight quantization gives them back exactly; the
activation fake-quants removed), the activation ranges, and the maps from the graph's layers to
its quantizers that the range transfer needs to find them in the .tflite.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mobile_compress.quantization.fake_quant import ActivationFakeQuant, activation_quantizers
from mobile_compress.quantization.fused import QConv, QLinear
from mobile_compress.quantization.prepare import _set_module, fused_layers


CALL_SEPARATOR = "@"


def quantizer_of(key: str) -> str:
    """The quantizer's module name of a ``quantized_activations`` key."""
    return key.split(CALL_SEPARATOR)[0]


@dataclass(frozen=True)
class IntegerGraph:
    """What a converter needs to write a fake-quant model as an int8 .tflite that computes what it computes.

    ``module``: the float graph to convert (``integer_graph_module``). ``ranges``: each activation
    quantizer's (scale, zero point), by module name. ``layers``: each fused layer's (int8-grid weight,
    int32-grid bias, groups) as ``module`` holds them, in PyTorch layout. ``weight_scales``: each fused
    layer's per-channel weight scales, what TFLite must store. ``layer_quantizers``: fused layer -> the
    quantizer of its output, where it has one. ``concat_layers``: quantizer -> the fused layers that
    feed, unquantized, the concatenation it quantizes. ``fake_quant``: the simulation itself.
    """

    module: nn.Module
    ranges: dict[str, tuple[float, int]]
    layers: dict[str, tuple[np.ndarray, np.ndarray, int]]
    weight_scales: dict[str, np.ndarray]
    layer_quantizers: dict[str, str]
    concat_layers: dict[str, list[str]]
    fake_quant: nn.Module

    def activations(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """The fake-quantized value at every quantizer for input ``x`` (NCHW), keyed as ``quantized_activations``."""
        return quantized_activations(self.fake_quant, x)

    @staticmethod
    def quantizer_of(key: str) -> str:
        """The quantizer's module name of an ``activations`` key."""
        return quantizer_of(key)


def build_integer_graph(model: nn.Module) -> IntegerGraph:
    """The integer graph of a prepared (fake-quant) model; ``model`` is left untouched."""
    return IntegerGraph(module=integer_graph_module(model), ranges=activation_ranges(model),
                        layers=integer_layers(model), weight_scales=weight_scales(model),
                        layer_quantizers={layer: q for q, layer in quantizer_layers(model).items()},
                        concat_layers=concat_quantizer_layers(model), fake_quant=model)


def integer_graph_module(model: nn.Module) -> nn.Module:
    """The float module TFLite converts: folded, weights on the int8 grid, no fake-quant (a new module)."""
    out = copy.deepcopy(model).eval()
    for name, layer in fused_layers(out):
        _set_module(out, name, layer.to_float())
    for name, _ in list(activation_quantizers(out)):
        _set_module(out, name, nn.Identity())
    return out


def activation_ranges(model: nn.Module) -> dict[str, tuple[float, int]]:
    """Each activation quantizer's (scale, zero_point), by module name."""
    return {name: fq.qparams() for name, fq in activation_quantizers(model)}


def weight_scales(model: nn.Module) -> dict[str, np.ndarray]:
    """Each fused layer's per-channel weight scales, by module name (what TFLite must store)."""
    from mobile_compress.quantization.fake_quant import fake_quant_weight
    from mobile_compress.quantization.scheme import per_channel_scales as scales_of

    out = {}
    with torch.no_grad():
        for name, layer in fused_layers(model):
            weight = layer.folded()[0] if isinstance(layer, QConv) else layer.linear.weight
            out[name] = scales_of(fake_quant_weight(weight)).numpy()
    return out


def quantizer_layers(model: nn.Module) -> dict[str, str]:
    """Activation quantizer name -> the fused conv/linear layer whose output it quantizes (where there is one)."""
    import torch.fx as fx

    if not isinstance(model, fx.GraphModule):
        return {}
    layers = dict(fused_layers(model))
    out = {}
    for node in model.graph.nodes:
        if node.op == "call_module" and isinstance(model.get_submodule(node.target), ActivationFakeQuant):
            src = node.args[0]
            if isinstance(src, fx.Node) and src.op == "call_module" and src.target in layers:
                out[node.target] = src.target
    return out


def concat_quantizer_layers(model: nn.Module) -> dict[str, list[str]]:
    """Quantizer name -> the fused layers that feed, unquantized, the concatenation it quantizes."""
    import torch.fx as fx

    if not isinstance(model, fx.GraphModule):
        return {}
    layers = dict(fused_layers(model))
    out: dict[str, list[str]] = {}
    for node in model.graph.nodes:
        if node.op == "call_module" and isinstance(model.get_submodule(node.target), ActivationFakeQuant):
            src = node.args[0]
            if isinstance(src, fx.Node) and src.op == "call_function" and src.target in (torch.cat, torch.concat):
                found = [a.target for a in src.args[0] if isinstance(a, fx.Node) and a.op == "call_module"
                         and a.target in layers]
                out.setdefault(node.target, []).extend(found)
    return out


def integer_layers(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Fused layer name -> (int8-grid weight, int32-grid bias, groups) as the integer graph holds them."""
    out = {}
    with torch.no_grad():
        for name, layer in fused_layers(model):
            plain = layer.to_float()
            plain = plain[0] if isinstance(plain, nn.Sequential) else plain
            bias = plain.bias if plain.bias is not None else torch.zeros(plain.weight.shape[0])
            out[name] = (plain.weight.numpy().copy(), bias.numpy().copy(), int(getattr(plain, "groups", 1)))
    return out


@torch.no_grad()
def quantized_activations(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The fake-quantized value of every activation quantizer for input ``x`` (NCHW), by module name.

    A quantizer shared by several tensors (a ShuffleNet stage's concatenations) is
    called more than once: its later outputs are keyed ``name@1``, ``name@2``, ...
    """
    captured: dict[str, np.ndarray] = {}
    handles = []

    def keep(name: str, out: torch.Tensor) -> None:
        key, k = name, 0
        while key in captured:
            k += 1
            key = f"{name}{CALL_SEPARATOR}{k}"
        captured[key] = out.detach().float().numpy().copy()

    for name, fq in activation_quantizers(model):
        handles.append(fq.register_forward_hook(lambda _m, _i, out, name=name: keep(name, out)))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return captured


__all__ = ["IntegerGraph", "activation_ranges", "build_integer_graph", "concat_quantizer_layers", "integer_graph_module",
           "integer_layers", "quantized_activations", "quantizer_layers", "quantizer_of", "weight_scales"]
