"""The range transfer: a fake-quant model's trained int8 parameters written into the .tflite TFLite made of its
integer graph, so that the file computes what the fake-quant model computes.

The route, chosen because onnx2tf drops QuantizeLinear/DequantizeLinear pairs (it
converts them to identities, so a QDQ ONNX loses its scales), and because TFLite's
calibration cannot be steered to reproduce learned ranges:

1. the fake-quant model's *integer graph* (``mobile_compress.quantization.IntegerGraph``:
   BatchNorm folded, weights already on the per-channel int8 grid, no fake-quant) is
   exported to ONNX and converted to a full-integer .tflite by the usual onnx2tf run;
   TFLite's own per-channel weight quantization then gives back exactly the trained int8
   weights (its calibration only lays out the int8 graph: the ranges are replaced here);
2. each conv/FC op of the .tflite is identified with its PyTorch layer by its int8 weights;
   its output (and a concatenation it feeds) gets that layer's trained (scale, zero point)
   and its int32 bias is set to the trained one; the remaining int8 activations (input,
   adds, muls, means, hardswish pieces) are matched to the fake-quant point they hold by
   running both on the same images (same size, NHWC/NCHW aside, values within
   quantization noise), round after round as upstream tensors get their scales; ops that
   must keep their input's scale (pooling, padding, reshapes, splits) and concatenations
   (one scale for inputs and output) pass it on;
3. the result is checked like any artifact: parity against the fake-quant model, float
   fallback, and a tensor table (how many activations carry a trained scale, weight
   scales against the trained ones).
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.tflite_requantize import SAME_SCALE_OPS, WEIGHTED_OPS, TfliteModel
from mobile_compress.quantization import IntegerGraph

MATCH_TOLERANCE = 0.5  # relative RMS difference below which a tensor is the fake-quant output it resembles
PROBE_IMAGES = 8  # the first calibration images; they probe the tensors when ranges are matched by value
MAX_ROUNDS = 8  # rounds of matching by value


@dataclass
class RangeTransfer:
    """How the trained int8 parameters went into the .tflite."""

    activations: int = 0  # int8 activation tensors in the file
    matched: int = 0  # given a trained scale: by the layer's weights, by value, or through a same-scale op
    unmapped: list[str] = field(default_factory=list)  # keep TFLite's calibrated scale
    conflicts: list[str] = field(default_factory=list)  # same-scale ops whose input and output now differ
    biases_rescaled: int = 0
    weight_layers_checked: int = 0
    weight_scale_max_rel_diff: float = 0.0
    quantizers: int = 0  # fake-quant points in the model
    quantizers_used: int = 0  # of which found in the .tflite

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transfer_ranges(tflite_in: Path, tflite_out: Path, graph: IntegerGraph, probe_nchw: np.ndarray,
                    layout: str = "nhwc") -> RangeTransfer:
    """Write ``graph``'s activation ranges (and int32 biases) into ``tflite_in``, saved as ``tflite_out``.

    First by structure: each conv/FC op is the layer whose int8 weights it holds, so its
    output and the concatenations it feeds get that layer's quantizer. Then, on the file
    so corrected, by value for the rest (input, adds, muls, means, hardswish, ...).
    """
    model = TfliteModel(tflite_in)
    ranges = graph.ranges
    acts = model.activations()
    act_ids = {t.index for t in acts}
    report = RangeTransfer(activations=len(acts), quantizers=len(ranges))
    layers = graph.layers
    op_layer = _layers_of_ops(model, layers)
    quantizer_after = graph.layer_quantizers
    assigned: dict[int, tuple[float, int]] = {}
    used: set[str] = set()
    layer_output = {}
    for op in model.ops:
        layer = op_layer.get(op.index)
        if layer is None or not op.outputs:
            continue
        layer_output[layer] = op.outputs[0]
        if layer in quantizer_after:
            assigned[op.outputs[0]] = ranges[quantizer_after[layer]]
            used.add(quantizer_after[layer])
    producers, consumers = model.producers(), model.consumers()
    for q, feeders in graph.concat_layers.items():
        for layer in feeders:
            for op in consumers.get(layer_output.get(layer, -1), []):
                if op.name == "CONCATENATION" and op.outputs[0] not in assigned:
                    assigned[op.outputs[0]] = ranges[q]
                    used.add(q)
    _propagate(model, assigned, act_ids, producers, consumers)
    _write(model, assigned, layers, op_layer)

    # by value, on the file whose convs now carry the trained scales; again after each round of matches,
    # since a tensor deep in the graph only agrees with its fake-quant twin once the ones before it do
    for _ in range(MAX_ROUNDS):
        pending = [t for t in acts if t.index not in assigned]
        if not pending:
            break
        with tempfile.TemporaryDirectory(prefix="mobile-compress-ranges-") as tmp:
            staged = model.save(Path(tmp) / "staged.tflite")
            tfl_values, sim_values = _probe(staged, graph, pending, probe_nchw, layout)
        found = _match_by_value(tfl_values, sim_values)
        if not found:
            break
        for index, name in found.items():
            assigned[index] = ranges[graph.quantizer_of(name)]
            used.add(graph.quantizer_of(name))
        _propagate(model, assigned, act_ids, producers, consumers)
        _write(model, assigned, layers, op_layer)
    report.matched = len(assigned)
    report.quantizers_used = len(used)
    report.biases_rescaled = _write(model, assigned, layers, op_layer)
    report.unmapped = [f"{t.name} {list(t.shape)}" for t in acts if t.index not in assigned]
    for op in model.ops:
        if op.name in SAME_SCALE_OPS | {"CONCATENATION"}:
            outs = [model.tensors[t] for t in op.outputs if t in act_ids]
            ins = [model.tensors[t] for t in (op.inputs if op.name == "CONCATENATION" else op.inputs[:1])
                   if t in act_ids]
            for a in ins:
                for b in outs:
                    if not (np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)):
                        report.conflicts.append(f"{op.name} #{op.index}: {a.name} {a.scale} vs {b.name} {b.scale}")
    # weights: TFLite quantized the trained (grid) weights itself; its scales must be the trained ones
    worst = 0.0
    for op_index, layer in op_layer.items():
        file_scales = model.tensors[model.ops[op_index].inputs[1]].scale
        want = graph.weight_scales[layer]
        worst = max(worst, float(np.max(np.abs(file_scales - want) / np.maximum(want, 1e-12)))
                    if file_scales.shape == want.shape else float("inf"))
    report.weight_layers_checked = len(op_layer)
    report.weight_scale_max_rel_diff = worst
    model.save(tflite_out)
    return report


def _match_by_value(tfl_values: dict[int, np.ndarray], sim_values: dict[str, np.ndarray]) -> dict[int, str]:
    """Tensor index -> the fake-quant output it equals (same size, values within quantization noise)."""
    by_size: dict[int, list[str]] = {}  # compared flat, in NHWC order: (N, C) and (N, 1, 1, C) are the same values
    for name, value in sim_values.items():
        by_size.setdefault(value[0].size, []).append(name)
    found = {}
    for index, value in tfl_values.items():
        value = value.reshape(len(value), -1)
        best, best_err = None, MATCH_TOLERANCE
        for name in by_size.get(value.shape[1], []):
            ref = sim_values[name].reshape(len(value), -1)
            err = float(np.sqrt(np.mean((value - ref) ** 2)) / (np.sqrt(np.mean(ref ** 2)) + 1e-12))
            if err < best_err:
                best, best_err = name, err
        if best is not None:
            found[index] = best
    return found




def _tflite_layout(weight: np.ndarray, groups: int) -> np.ndarray:
    """A PyTorch conv/linear weight in TFLite's layout: OHWI for convs, 1HWO for depthwise, OI for FC."""
    if weight.ndim == 2:
        return weight
    if groups > 1 and groups == weight.shape[0] and weight.shape[1] == 1:
        return weight.transpose(1, 2, 3, 0)
    return weight.transpose(0, 2, 3, 1)


def _layers_of_ops(model: TfliteModel, layers: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> dict[int, str]:
    """Conv/FC op index -> the fused layer whose int8 weights it holds (compared after dequantization)."""
    candidates: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
    for name, (weight, _, groups) in layers.items():
        w = _tflite_layout(weight, groups)
        candidates.setdefault(w.shape, []).append((name, w))
    found: dict[int, str] = {}
    taken: set[str] = set()
    for op in model.ops:
        if op.name not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        t = model.tensors[op.inputs[1]]
        if t.dtype != "INT8" or not t.constant or not len(t.scale):
            continue
        q = model.buffer(t.index).view(np.int8).reshape(t.shape).astype(np.float32)
        axis_shape = [1] * q.ndim
        axis_shape[0 if op.name != "DEPTHWISE_CONV_2D" else -1] = -1
        value = q * t.scale.reshape(axis_shape) if len(t.scale) > 1 else q * t.scale[0]
        for name, w in candidates.get(tuple(t.shape), []):
            if name not in taken and np.allclose(value, w, rtol=0, atol=1e-6 * max(float(np.abs(w).max()), 1e-12)):
                found[op.index] = name
                taken.add(name)
                break
    return found


def _propagate(model: TfliteModel, assigned: dict[int, tuple[float, int]], act_ids: set[int],
               producers: dict, consumers: dict) -> None:
    """Tensors joined by same-scale ops and concatenations get one scale: a concatenation's, else the first's.

    TFLite's int8 kernels for pooling, padding, reshapes, splits and concatenations need
    their inputs and outputs on one scale; the simulation ties them the same way, so the
    group takes the scale of its concatenation output (set by structure) when it has one.
    """
    parent = {t: t for t in act_ids}

    def root(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    concat_outputs = set()
    for op in model.ops:
        if op.name == "CONCATENATION":
            members = [t for t in op.inputs + op.outputs if t in act_ids]
            concat_outputs.update(t for t in op.outputs if t in act_ids)
        elif op.name in SAME_SCALE_OPS:
            members = [t for t in op.inputs[:1] + op.outputs if t in act_ids]
        else:
            continue
        for t in members[1:]:
            parent[root(t)] = root(members[0])
    order = {t: i for i, op in enumerate(model.ops) for t in op.outputs}
    groups: dict[int, list[int]] = {}
    for t in act_ids:
        groups.setdefault(root(t), []).append(t)
    for members in groups.values():
        if len(members) < 2:
            continue
        known = sorted((t for t in members if t in assigned), key=lambda t: (t not in concat_outputs, order.get(t, -1)))
        if known:
            for t in members:
                assigned[t] = assigned[known[0]]


def _write(model: TfliteModel, assigned: dict[int, tuple[float, int]], layers: dict, op_layer: dict[int, str]) -> int:
    """Scales into the file; pad constants follow their input; biases are the trained int32 ones."""
    for index, (scale, zero) in assigned.items():
        model.set_activation(index, scale, zero)
    for op in model.ops:
        if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[0] in assigned:
            model.set_constant_like(op.inputs[2], op.inputs[0])
    biases = {op_index: layers[layer][1] for op_index, layer in op_layer.items()
              if _same_bias(model, model.ops[op_index], layers[layer][1])}
    return model.rescale_biases(biases)


def _same_bias(model: TfliteModel, op: Any, trained: np.ndarray) -> bool:
    """Whether the op's bias is the layer's own, not one the converter folded a constant into.

    TFLite's converter folds an add after a fully-connected layer into its bias (the
    ``+ 3`` of a hardswish, MobileNetV3's classifier); that bias keeps its folded value.
    """
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return True
    info = model.tensors[op.inputs[2]]
    if info.dtype != "INT32" or not info.constant:
        return True
    real = model.buffer(info.index).view(np.int32).astype(np.float64) * info.scale.astype(np.float64)
    trained = np.asarray(trained, np.float64).reshape(-1)
    if real.shape != trained.shape:
        return False
    step = np.abs(info.scale.astype(np.float64)) * 2 + 1e-6 * max(float(np.abs(trained).max()), 1e-12)
    return bool(np.all(np.abs(real - trained) <= step))


def _probe(path: Path, graph: IntegerGraph, tensors: list, probe_nchw: np.ndarray, layout: str
           ) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """Dequantized values of ``tensors`` in the .tflite and of every fake-quant point, on the same images."""
    import torch

    from mobile_compress.litert import dequantize, interpreter, quantize

    model = TfliteModel(path)
    interp = interpreter(path, delegates=False, preserve_all_tensors=True)
    interp.allocate_tensors()
    detail_in = interp.get_input_details()[0]
    batch = int(detail_in["shape"][0]) or 1
    tfl: dict[int, list[np.ndarray]] = {t.index: [] for t in tensors}
    sim: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(probe_nchw) - batch + 1, batch):
        x = np.ascontiguousarray(probe_nchw[i:i + batch], np.float32)
        interp.set_tensor(detail_in["index"], quantize(x.transpose(0, 2, 3, 1) if layout == "nhwc" else x, detail_in))
        interp.invoke()
        for t in tensors:
            info = model.tensors[t.index]
            detail = {"dtype": np.int8, "quantization": (float(info.scale[0]) if len(info.scale) else 1.0,
                                                        int(info.zero_point[0]) if len(info.zero_point) else 0)}
            tfl[t.index].append(dequantize(interp.get_tensor(t.index), detail))
        for name, value in graph.activations(torch.from_numpy(x)).items():
            sim.setdefault(name, []).append(value.transpose(0, 2, 3, 1) if value.ndim == 4 and layout == "nhwc"
                                            else value)
    return ({k: np.concatenate(v) for k, v in tfl.items() if v}, {k: np.concatenate(v) for k, v in sim.items() if v})


__all__ = ["MATCH_TOLERANCE", "PROBE_IMAGES", "RangeTransfer", "transfer_ranges"]
