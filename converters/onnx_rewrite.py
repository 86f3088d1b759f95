"""Rewrites of the ONNX graph we hand to onnx2tf, so the TFLite it makes runs fast on phones.

XNNPACK (the CPU delegate on Android and in the host's LiteRT) has no int8 HARD_SWISH and
no RELU_0_TO_1 in any precision. onnx2tf turns ONNX HardSwish into TFLite HARD_SWISH and
HardSigmoid into RELU_0_TO_1, so MobileNetV3 ran with 27 ops outside the delegate and its
int8 model was slower than fp32. Both activations are rewritten here into ADD (with a fused
RELU6) and MUL, which XNNPACK runs in float and in int8:

    hardsigmoid(x) = relu6(x + 3) * (1/6)
    hardswish(x)   = (x * (1/6)) * relu6(x + 3)

The hardswish form is ordered so that TFLite's converter does not fuse it back into
HARD_SWISH (its patterns match x * relu6(x + 3) * (1/6) and x * (relu6(x + 3) * (1/6))).
Only the standard constants are rewritten (HardSigmoid alpha 1/6, beta 1/2); others stay.
"""
from __future__ import annotations

import numpy as np

_ONE_SIXTH = np.float32(1.0 / 6.0)


def decompose_hard_activations(model) -> dict[str, int]:
    """Rewrite HardSwish and HardSigmoid nodes in place; returns how many of each were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {
        "mc_three": np.array(3.0, np.float32), "mc_zero": np.array(0.0, np.float32),
        "mc_six": np.array(6.0, np.float32), "mc_one_sixth": np.array(_ONE_SIXTH, np.float32),
    }
    counts = {"HardSwish": 0, "HardSigmoid": 0}
    nodes = []
    for node in graph.node:
        if node.op_type == "HardSigmoid" and _standard_hardsigmoid(node):
            x, y, p = node.input[0], node.output[0], f"{node.name or node.output[0]}_mc"
            nodes += [helper.make_node("Add", [x, "mc_three"], [f"{p}_add"], name=f"{p}_add"),
                      helper.make_node("Clip", [f"{p}_add", "mc_zero", "mc_six"], [f"{p}_relu6"], name=f"{p}_relu6"),
                      helper.make_node("Mul", [f"{p}_relu6", "mc_one_sixth"], [y], name=f"{p}_scale")]
            counts["HardSigmoid"] += 1
        elif node.op_type == "HardSwish":
            x, y, p = node.input[0], node.output[0], f"{node.name or node.output[0]}_mc"
            nodes += [helper.make_node("Mul", [x, "mc_one_sixth"], [f"{p}_sixth"], name=f"{p}_sixth"),
                      helper.make_node("Add", [x, "mc_three"], [f"{p}_add"], name=f"{p}_add"),
                      helper.make_node("Clip", [f"{p}_add", "mc_zero", "mc_six"], [f"{p}_relu6"], name=f"{p}_relu6"),
                      helper.make_node("Mul", [f"{p}_sixth", f"{p}_relu6"], [y], name=f"{p}_mul")]
            counts["HardSwish"] += 1
        else:
            nodes.append(node)
    if any(counts.values()):
        del graph.node[:]
        graph.node.extend(nodes)
        have = {i.name for i in graph.initializer}
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items() if k not in have)
    return counts


def _standard_hardsigmoid(node) -> bool:
    attrs = {a.name: a.f for a in node.attribute}
    return abs(attrs.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(attrs.get("beta", 0.5) - 0.5) < 1e-6


def channel_pads_to_conv(model) -> int:
    """Rewrite zero Pads of only the channel axis of an NCHW tensor as a 1x1 Conv that embeds the channels.

    ResNet-20/56's option-A shortcut pads channels. onnx2tf has to guess which axis a Pad
    (or a Concat) means once it has moved tensors to NHWC, and when C == H == W (16x16x16
    in ResNet-20) it guesses wrong: the fp32 .tflite was off by 35 % of the logit range.
    A convolution's layout is never ambiguous. Its weights are 0 and 1, so the result is
    exact in float and in int8 (1.0 is 127 x 1/127 with per-channel symmetric scales).
    A plain spatial subsampling Slice (``x[:, :, ::s, ::s]``) feeding only the Pad becomes
    the Conv's stride, so no ambiguous 16x16x16 tensor is left at all.
    Returns the number rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    constants = _constants(model)
    producers, consumers = _producers_and_consumer_counts(model)
    rewritten, nodes, weights, dropped = 0, [], [], set()
    for node in model.graph.node:
        found = _channel_pad(node, shapes, constants)
        if found is None:
            nodes.append(node)
            continue
        (before, after), shape = found
        channels = shape[1]
        source, stride = node.input[0], 1
        slice_node = producers.get(source)
        step = _subsampling_step(slice_node, constants) if slice_node is not None else None
        if step and consumers.get(source) == 1:
            source, stride = slice_node.input[0], step
            dropped.add(id(slice_node))
        embed = np.zeros((before + channels + after, channels, 1, 1), np.float32)
        embed[before + np.arange(channels), np.arange(channels), 0, 0] = 1.0
        name = f"{node.output[0]}_mc_embed"
        weights.append(numpy_helper.from_array(embed, name))
        nodes.append(helper.make_node("Conv", [source, name], [node.output[0]], name=f"{node.name}_mc_conv",
                                      kernel_shape=[1, 1], strides=[stride, stride]))
        rewritten += 1
    if rewritten:
        _replace_nodes(model, [n for n in nodes if id(n) not in dropped], weights)
    return rewritten


def _subsampling_step(node, constants: dict) -> int | None:
    """``s`` when ``node`` is ``x[:, :, ::s, ::s]`` on a 4-D tensor (Slice of axes 2 and 3 from 0 to the end)."""
    if node.op_type != "Slice" or len(node.input) < 5 or any(i not in constants for i in node.input[1:5]):
        return None
    starts, ends, axes, steps = (np.asarray(constants[i]).ravel().tolist() for i in node.input[1:5])
    axes = [a % 4 for a in axes]
    if sorted(axes) != [2, 3] or any(starts) or any(e < 2**31 for e in ends) or len(set(steps)) != 1:
        return None
    return int(steps[0]) if steps[0] > 1 else None


def _channel_pad(node, shapes: dict, constants: dict) -> tuple[tuple[int, int], list[int]] | None:
    """``((before, after), input_shape)`` for a constant-zero Pad of axis 1 only of a 4-D float tensor."""
    if node.op_type != "Pad" or len(node.input) < 2 or node.input[1] not in constants:
        return None
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    shape = shapes.get(node.input[0])
    if mode != "constant" or not shape or len(shape) != 4 or 0 in shape:
        return None
    if len(node.input) > 2 and node.input[2]:
        value = constants.get(node.input[2])
        if value is None or np.any(value != 0):
            return None
    if len(node.input) > 3 and node.input[3]:
        return None  # explicit axes: not produced by torch's exporter for this pattern
    pads = [int(p) for p in np.asarray(constants[node.input[1]]).ravel()]
    if len(pads) != 8 or any(p < 0 for p in pads):
        return None
    begin, end = pads[:4], pads[4:]
    if any(begin[i] or end[i] for i in (0, 2, 3)) or not (begin[1] or end[1]):
        return None
    return (begin[1], end[1]), shape


def ambiguous_channel_shuffles_to_conv(model) -> int:
    """Rewrite a channel shuffle whose output has C equal to its H or W as one 1x1 Conv that permutes the channels.

    ShuffleNetV2's ``channel_shuffle`` exports as Reshape (N, g, C/g, H, W), Transpose, Reshape
    (N, C, H, W). onnx2tf computes it in NCHW order and hands the result on without moving it
    back to NHWC; its consumers then guess the layout from the shape, and when C == W (a
    pruned x0.5 or x1.5 has 16 channels at 16x16) the next Split cut the width and the next
    strided depthwise Conv read a transposed image: the fp32 .tflite was off by 27 % (x0.5) and
    44 % (x1.5) of the logit range. A Conv's output is always NHWC, so nothing downstream has to
    guess. Its weights are a 0/1 permutation, exact in float and in int8 (1.0 is 127 x 1/127
    with per-channel symmetric scales; calibration gives the output its input's scale), and
    CONV_2D runs in XNNPACK. It costs C*C MACs a pixel where the Reshape/Transpose cost none:
    no slower at 16 channels, but rewriting every shuffle of a pruned x1.0 (58 to 232 channels)
    made it 1.7x (int8) to 2x (fp32) slower, so unambiguous shuffles are left alone.
    Returns the number rewritten.
    """
    from onnx import helper, numpy_helper

    infos = _tensor_infos(model)
    producers, consumers = _producers_and_consumer_counts(model)
    rewritten, nodes, weights, dropped, shape_inputs = 0, [], [], set(), []
    for node in model.graph.node:
        found = _ambiguous_channel_shuffle(node, infos, producers, consumers)
        if found is None:
            nodes.append(node)
            continue
        (grouping, transpose), groups = found
        channels = infos[node.output[0]][1][1]
        source = np.arange(channels).reshape(groups, channels // groups).T.ravel()
        permute = np.zeros((channels, channels, 1, 1), np.float32)
        permute[np.arange(channels), source, 0, 0] = 1.0
        name = f"{node.output[0]}_mc_shuffle"
        weights.append(numpy_helper.from_array(permute, name))
        nodes.append(helper.make_node("Conv", [grouping.input[0], name], [node.output[0]],
                                      name=f"{node.name or node.output[0]}_mc_shuffle", kernel_shape=[1, 1]))
        dropped |= {id(grouping), id(transpose)}
        shape_inputs += [grouping.input[1], node.input[1]]
        rewritten += 1
    if rewritten:
        kept = [n for n in nodes if id(n) not in dropped]
        _replace_nodes(model, kept, weights)
        orphans = set(shape_inputs) - {name for n in kept for name in n.input}  # the removed Reshapes' shapes
        for init in [i for i in model.graph.initializer if i.name in orphans]:
            model.graph.initializer.remove(init)
    return rewritten


def _ambiguous_channel_shuffle(node, infos: dict, producers: dict, consumers: dict) -> tuple | None:
    """``((first Reshape, Transpose), groups)`` when ``node`` ends a channel shuffle of a 4-D float NCHW
    tensor whose C is also its H or W: Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape back."""
    import onnx
    from onnx import helper

    if node.op_type != "Reshape" or node.output[0] not in infos:
        return None
    elem_type, shape = infos[node.output[0]]
    if elem_type != onnx.TensorProto.FLOAT or len(shape) != 4 or 0 in shape[1:] or shape[1] not in shape[2:]:
        return None  # the batch may be symbolic (0 here): the Conv does not depend on it
    transpose = producers.get(node.input[0])
    if transpose is None or transpose.op_type != "Transpose" or consumers.get(transpose.output[0]) != 1:
        return None
    perm = next((list(helper.get_attribute_value(a)) for a in transpose.attribute if a.name == "perm"), None)
    grouping = producers.get(transpose.input[0])
    if perm != [0, 2, 1, 3, 4] or grouping is None or grouping.op_type != "Reshape" \
            or consumers.get(grouping.output[0]) != 1 or grouping.input[0] not in infos:
        return None
    _, c, h, w = shape
    grouped = infos.get(grouping.output[0], (0, []))[1]
    if infos[grouping.input[0]][1][1:] != shape[1:] or len(grouped) != 5 or grouped[3:] != [h, w] \
            or grouped[1] * grouped[2] != c:
        return None
    return (grouping, transpose), grouped[1]


def _replace_nodes(model, nodes: list, initializers: list) -> None:
    """Make ``nodes`` the graph's node list (kept in order) and add ``initializers``."""
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(initializers)


def _producers_and_consumer_counts(model) -> tuple[dict, dict[str, int]]:
    """The node that makes each tensor, and how many node inputs read it."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    return producers, consumers


def _tensor_infos(model) -> dict[str, tuple[int, list[int]]]:
    """(element type, static shape) of every tensor ONNX shape inference can tell; unknown dims are 0."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: (v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in values}


def maxpool_pads_to_zero_pads(model) -> int:
    """Give padded (or ceil-mode) MaxPools of non-negative tensors an explicit zero Pad instead.

    A MaxPool whose padding TensorFlow cannot express ("SAME" pads the end, PyTorch both
    sides; ceil mode adds a partial window) is translated by onnx2tf as a PADV2 with
    -3.4e38. Int8 calibration then folds that constant into the tensor's range: its scale
    became 1e36, the int8 model computed nothing, and XNNPACK refused to prepare it
    (ResNet, ShuffleNetV2 and SqueezeNet stems). After a ReLU the tensor is >= 0 and every
    window holds a real element, so padding with 0 gives the same maximum. Returns the
    number rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    producers = {out: node for node in model.graph.node for out in node.output}
    constants = _constants(model)
    rewritten, nodes, extra = 0, [], []
    for node in model.graph.node:
        pads = _explicit_maxpool_pads(node, shapes.get(node.input[0]))
        if pads is None or not _non_negative(node.input[0], producers, constants):
            nodes.append(node)
            continue
        name = f"{node.output[0]}_mc_pads"
        extra.append(numpy_helper.from_array(np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64),
                                             name))
        padded = f"{node.output[0]}_mc_padded"
        nodes.append(helper.make_node("Pad", [node.input[0], name], [padded], name=f"{node.name}_mc_pad",
                                      mode="constant"))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute
                 if a.name not in ("pads", "ceil_mode", "auto_pad")}
        nodes.append(helper.make_node("MaxPool", [padded], list(node.output), name=node.name, **attrs))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(extra)
    return rewritten


def _constants(model) -> dict:
    from onnx import numpy_helper

    found = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _explicit_maxpool_pads(node, shape: list[int] | None) -> list[int] | None:
    """[top, left, bottom, right] zero padding that makes ``node`` an unpadded floor-mode 2-D MaxPool."""
    from onnx import helper

    if node.op_type != "MaxPool" or len(node.output) != 1 or not shape or len(shape) != 4 or 0 in shape:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        return None
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    ceil = bool(attrs.get("ceil_mode", 0))
    if len(kernel) != 2 or (not any(pads) and not ceil):
        return None
    out = []
    for axis in range(2):
        size, k, s, d = shape[2 + axis], kernel[axis], strides[axis], dilations[axis]
        span = d * (k - 1) + 1
        total = size + pads[axis] + pads[axis + 2] - span
        count = (-(-total // s) if ceil else total // s) + 1
        if ceil and (count - 1) * s >= size + pads[axis]:
            count -= 1  # PyTorch/ONNX: the last window must start inside the input or left padding
        out.append(max(0, (count - 1) * s + span - size - pads[axis]))
    return [pads[0], pads[1], out[0], out[1]]


def _non_negative(name: str, producers: dict, constants: dict, depth: int = 0) -> bool:
    """Whether tensor ``name`` is >= 0 by construction (ReLU, a Clip at 0 or above, and what keeps that)."""
    node = producers.get(name)
    if node is None or depth > 8:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type == "Clip":
        low = constants.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        return low is not None and float(np.min(low)) >= 0
    if node.op_type in ("MaxPool", "Identity"):
        return _non_negative(node.input[0], producers, constants, depth + 1)
    if node.op_type == "Concat":
        return all(_non_negative(i, producers, constants, depth + 1) for i in node.input)
    return False
