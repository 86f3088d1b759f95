"""From the fake-quant model to what is deployed: the float graph TFLite converts, and its int8 ranges.

``deploy_model`` is the same graph with every fused op replaced by a plain conv or
linear layer holding the folded weights already on the int8 grid (so TFLite's own
per-channel weight quantization reproduces them exactly), and the activation
fake-quants removed (their ranges are written into the .tflite afterwards).
"""
from __future__ import annotations

import copy

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


def deploy_model(model: nn.Module) -> nn.Module:
    """The float model to convert: folded, weights quantized, no fake-quant (a new module; ``model`` is untouched)."""
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


def deployed_layers(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Fused layer name -> (int8-grid weight, int32-grid bias, groups) as deployed, in PyTorch layout."""
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


__all__ = ["ActivationFakeQuant", "QConv", "QLinear", "activation_ranges", "deploy_model", "quantized_activations",
           "quantizer_layers", "quantizer_of", "weight_scales", "concat_quantizer_layers", "deployed_layers"]
