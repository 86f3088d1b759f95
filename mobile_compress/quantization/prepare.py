"""Turn a float model into its TFLite-int8 simulation: a torch.fx graph pass.

The pass traces the model, fuses each Conv2d with the BatchNorm2d and ReLU/ReLU6
that follow it (and Linear with ReLU/ReLU6) into one fake-quantized op, and puts an
activation fake-quant after every op that TFLite gives an output scale of its own:
the model input, convs and fully-connected layers (after their fused activation),
adds and muls (a ReLU after them is fused, as TFLite fuses it into ADD/MUL),
hardswish (as its three int8 pieces, see ``fused.DecomposedHardswish``), hardsigmoid
(folded into the conv before it where there is one), sigmoid (TFLite's fixed 1/256
scale), ReLU on its own and average pools (TFLite's MEAN requantizes). Ops that only move int8 values keep their
input's scale and get none: max-pooling, reshapes, flatten, transpose, channel split
(chunk/getitem), dropout, identity. A concatenation has one scale for its inputs and
its output (TFLite's int8 CONCATENATION requires it): an input made only for the
concatenation is not quantized on its own, an input that is a reshaped or split view
of a quantized tensor (ShuffleNet's pass-through half) shares that tensor's quantizer
with the concatenation, as TFLite's converter ties them, and any other input is
requantized to the concatenation's scale.
Anything else is refused with a ``UserError`` naming the module.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from mobile_compress.errors import UserError
from mobile_compress.quantization import scheme
from mobile_compress.quantization.fake_quant import ActivationFakeQuant
from mobile_compress.quantization.fused import DecomposedHardswish, MulConstant, QConv, QLinear

QUANT_PREFIX = "activation_quant"

_FUSABLE_ACT_MODULES: dict[type, str] = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
_FUSABLE_ACT_FUNCTIONS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6"}
_FUSABLE_ACT_METHODS = {"relu": "relu"}

# ops with an output scale of their own
_NEW_SCALE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid,
                      nn.AdaptiveAvgPool2d, nn.AvgPool2d, MulConstant, DecomposedHardswish)
_NEW_SCALE_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul, torch.cat,
                        torch.concat, F.adaptive_avg_pool2d, F.avg_pool2d, F.relu, torch.relu, F.relu6, F.hardswish,
                        F.hardsigmoid, torch.sigmoid, F.sigmoid, torch.mean}
_NEW_SCALE_METHODS = {"add", "add_", "mul", "mul_", "mean", "relu", "relu_", "sigmoid"}
# ops that move int8 values and keep their input's scale
_SAME_SCALE_MODULES = (nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)
_SAME_SCALE_FUNCTIONS = {torch.flatten, F.max_pool2d, F.dropout, torch.transpose, torch.reshape, torch.chunk,
                         torch.split, torch.permute, torch.squeeze, torch.unsqueeze, operator.getitem,
                         operator.floordiv, getattr}
_SAME_SCALE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "chunk", "split", "size",
                       "dim", "squeeze", "unsqueeze"}


def prepare(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """The fake-quantized twin of ``model`` (which it takes over: its parameters are reused).

    ``input_shape``: one input's shape, e.g. (1, 3, 32, 32), used to tell tensors from
    sizes while tracing. The result computes in float until its ranges are observed
    (``calibrate`` or QAT training).
    """
    graph_module = _trace(model)
    ShapeProp(graph_module).propagate(torch.zeros(input_shape))
    _fuse(graph_module)
    for name, module in list(graph_module.named_modules()):
        if isinstance(module, nn.Hardswish):
            _set_module(graph_module, name, DecomposedHardswish())
    _insert_quantizers(graph_module)
    _link_input_quantizers(graph_module)
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _trace(model: nn.Module) -> fx.GraphModule:
    name = type(model).__name__
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 - tracing failures are the user's model to adapt
        raise UserError(f"cannot trace {name} for quantization: {type(err).__name__}: {str(err).splitlines()[0]}",
                        hint="quantization needs a model torch.fx can trace: no Python control flow on tensor "
                             "values in forward (move it into a leaf module or use torch.where)") from None


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _set_module(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _fusable_activation(gm: fx.GraphModule, node: fx.Node | None) -> str | None:
    if node is None:
        return None
    if node.op == "call_module":
        return _FUSABLE_ACT_MODULES.get(type(_module(gm, node)))
    if node.op == "call_function":
        if node.target is F.hardtanh and node.args[1:3] == (0.0, 6.0):
            return "relu6"
        return _FUSABLE_ACT_FUNCTIONS.get(node.target)
    if node.op == "call_method":
        return _FUSABLE_ACT_METHODS.get(node.target)
    return None


def _fuse(gm: fx.GraphModule) -> None:
    """Conv2d[-BatchNorm2d][-ReLU|ReLU6] and Linear[-ReLU|ReLU6] become one QConv / QLinear node."""
    for node in list(gm.graph.nodes):
        module = _module(gm, node)
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise UserError(f"layer '{node.target}' pads with mode {module.padding_mode!r}; TFLite convs pad "
                                "with zeros", hint="use padding_mode='zeros' (the default) for a quantizable model")
            absorbed, bn = [], None
            nxt = _only_user(node)
            if nxt is not None and isinstance(_module(gm, nxt), nn.BatchNorm2d):
                bn = _module(gm, nxt)
                absorbed.append(nxt)
            tail = absorbed[-1] if absorbed else node
            act = _fusable_activation(gm, _only_user(tail))
            post_affine = None
            if act is not None:
                absorbed.append(_only_user(tail))
            elif _only_user(tail) is not None and isinstance(_module(gm, _only_user(tail)), nn.Hardsigmoid):
                # hardsigmoid = relu6(x + 3) * (1/6): the + 3 folds into the bias, ReLU6 into the conv
                post_affine, act = (1.0, 3.0), "relu6"
                _set_module(gm, _only_user(tail).target, MulConstant(1.0 / 6.0))
            _set_module(gm, node.target, QConv(module, bn, act, post_affine))
        elif isinstance(module, nn.Linear):
            act = _fusable_activation(gm, _only_user(node))
            absorbed = [_only_user(node)] if act is not None else []
            _set_module(gm, node.target, QLinear(module, act))
        else:
            continue
        for old in absorbed:  # the fused node now stands for the whole chain
            old.replace_all_uses_with(node)
            node.meta = {**node.meta, "tensor_meta": old.meta.get("tensor_meta")}
        for old in reversed(absorbed):
            gm.graph.erase_node(old)
            # a module called again elsewhere (ResNet's blocks call one ReLU after bn1 and after the add)
            # stays for those calls; only one no longer called is dropped (with its BatchNorm buffers)
            if old.op == "call_module" and not any(n.op == "call_module" and n.target == old.target
                                                   for n in gm.graph.nodes):
                _set_module(gm, old.target, nn.Identity())


def _is_tensor(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """'new' (own output scale), 'same' (keeps its input's scale) or 'skip' (placeholders/outputs)."""
    if node.op == "placeholder":
        return "new"
    if node.op in ("output", "get_attr"):
        return "skip"
    if node.op == "call_module":
        module = _module(gm, node)
        if isinstance(module, (QConv, QLinear) + _NEW_SCALE_MODULES):
            return "new"
        if isinstance(module, _SAME_SCALE_MODULES):
            return "same"
        what = f"layer '{node.target}' ({type(module).__name__})"
        if isinstance(module, nn.BatchNorm2d):
            what += " is a BatchNorm that does not follow a Conv2d"
            hint = "quantization folds BatchNorm into the conv before it; place every BatchNorm2d right after a Conv2d"
        else:
            what += " has no int8 TFLite equivalent in the quantizer"
            hint = ("use Conv2d, BatchNorm2d, Linear, ReLU, ReLU6, Hardswish, Hardsigmoid, Sigmoid, pooling, "
                    "add, mul, cat, reshape/flatten/chunk; or keep this part of the model in float")
        raise UserError(f"cannot quantize {what}", hint=hint)
    target = node.target
    if node.op == "call_function":
        if target in _NEW_SCALE_FUNCTIONS:
            return "new"
        if target in _SAME_SCALE_FUNCTIONS:
            return "same"
        name = getattr(target, "__name__", str(target))
    else:
        if target in _NEW_SCALE_METHODS:
            return "new"
        if target in _SAME_SCALE_METHODS:
            return "same"
        name = f"Tensor.{target}"
    if not _is_tensor(node):
        return "same"  # arithmetic on sizes and other Python values
    raise UserError(f"cannot quantize operation {name} at node '{node.name}' (in {_owner(node)})",
                    hint="the quantizer knows conv, linear, batch norm, ReLU/ReLU6/hardswish/hardsigmoid/sigmoid, "
                         "pooling, add, mul, cat and reshapes; rewrite the operation with those")


def _owner(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else "the model's forward"


def _insert_quantizers(gm: fx.GraphModule) -> None:
    graph = gm.graph
    kinds = {node: _kind(gm, node) for node in graph.nodes}
    wanted = [n for n in graph.nodes if kinds[n] == "new" and _is_tensor(n) and not _feeds_fc_hardswish(gm, n)]
    for node in list(wanted):
        # a fusable activation after an add/mul: TFLite fuses it, one scale after both
        if _fusable_activation(gm, node) is not None and node.args:
            src = node.args[0]
            if isinstance(src, fx.Node) and src in wanted and _only_user(src) is node and kinds[src] == "new" \
                    and src.op != "placeholder":
                wanted.remove(src)
        # a concatenation shares its scale with inputs made only for it
        if node.op == "call_function" and node.target in (torch.cat, torch.concat):
            for src in node.args[0]:
                if isinstance(src, fx.Node) and src in wanted and _only_user(src) is node and src.op != "placeholder":
                    wanted.remove(src)
    paths: dict[fx.Node, str] = {}
    for node in wanted:
        fixed = (scheme.SIGMOID_SCALE, scheme.SIGMOID_ZERO_POINT) if _is_sigmoid(gm, node) else None
        path = f"{QUANT_PREFIX}.{node.name}"
        root = _shared_root(node, kinds, paths) if node.target in (torch.cat, torch.concat) else None
        if root is not None:
            path = paths[root]  # TFLite keeps one scale along reshape/split chains and through the concatenation
        else:
            gm.add_submodule(path, ActivationFakeQuant(fixed))
        paths[node] = path
        with graph.inserting_after(node):
            fq = graph.call_module(path, (node,))
        fq.meta = dict(node.meta)
        paths[fq] = path
        node.replace_all_uses_with(fq, delete_user_cb=lambda user: user is not fq)


def _feeds_fc_hardswish(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A fully-connected layer whose only user is a hardswish has no int8 output of its own in TFLite.

    The converter folds the hardswish's ``+ 3`` (with ReLU6) into one copy of the FC and its
    ``* 1/6`` into a second copy, so the two inner pieces are computed from the FC's int32
    accumulator directly (MobileNetV3's classifier); quantizing the FC output as well made
    the simulation disagree with the .tflite on most images.
    """
    user = _only_user(node)
    return isinstance(_module(gm, node), QLinear) and user is not None \
        and isinstance(_module(gm, user), DecomposedHardswish)


def _link_input_quantizers(gm: fx.GraphModule) -> None:
    """Give each conv/linear the quantizer of its input (through same-scale ops), for its int32 bias grid."""
    for node in gm.graph.nodes:
        layer = _module(gm, node)
        if not isinstance(layer, (QConv, QLinear)):
            continue
        src = node.args[0]
        while isinstance(src, fx.Node):
            module = _module(gm, src)
            if isinstance(module, ActivationFakeQuant):
                object.__setattr__(layer, "input_quant", module)
                break
            if _kind(gm, src) != "same" or not src.args:
                break
            src = src.args[0]


def _shared_root(cat: fx.Node, kinds: dict[fx.Node, str], paths: dict[fx.Node, str]) -> fx.Node | None:
    """The quantized tensor a concatenation input is a reshaped/split view of, if any.

    ShuffleNet's pass-through half reaches the next concatenation through
    reshape/transpose/split only, so TFLite gives both one scale (its int8
    CONCATENATION needs equal input and output scales): the concatenation then
    shares that tensor's quantizer instead of having its own.
    """
    for src in cat.args[0]:
        node = src
        while isinstance(node, fx.Node) and node not in paths and kinds.get(node) == "same" and node.args:
            node = node.args[0]
        if isinstance(node, fx.Node) and node in paths and node is not src:
            return node
    return None


def _is_sigmoid(gm: fx.GraphModule, node: fx.Node) -> bool:
    """TFLite's LOGISTIC has a fixed output scale, so the simulation uses it too."""
    if node.op == "call_module":
        return isinstance(_module(gm, node), nn.Sigmoid)
    if node.op == "call_function":
        return node.target in (torch.sigmoid, F.sigmoid)
    return node.op == "call_method" and node.target == "sigmoid"


def fused_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The QConv/QLinear layers of a prepared model, by name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (QConv, QLinear))]


def set_bn_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) BatchNorm statistics: frozen convs compute exactly the op TFLite runs."""
    for _, layer in fused_layers(model):
        if isinstance(layer, QConv):
            layer.bn_frozen = frozen

