"""Trace a model once on a real input and build its ``ChannelGraph``.

Why not torch.fx: the zoo's ShuffleNetV2 unpacks ``x.size()`` and our models use
in-place adds, both of which symbolic tracing cannot follow. Instead the model runs on
one real image while a ``TorchFunctionMode`` sees every tensor function and forward
hooks see every layer with weights. Each tensor gets a *shadow*: an integer tensor of
the same shape holding, at each element, the label of the channel it came from. Shape
ops (view, transpose, chunk, cat, pad, flatten, indexing) are simply applied to the
shadow too, so a channel shuffle moves labels exactly as it moves channels, and the
permutation is known without special-casing ShuffleNet.

What couples labels (``UnionFind.union``):
- element-wise ops between tensors (residual add, SE scale * features);
- ``chunk(k)`` on the channel dimension: the i-th channel of every chunk, because after
  pruning the chunks are cut at the new size, so they must lose channels in step;
- a view that splits the channel dimension into (groups, channels per group), as in a
  channel shuffle: the channels sharing an index within their group, for the same reason.
What fixes labels (never pruned): the network input and output, channel-dim slicing,
``split`` with sizes, channel padding (its sizes are constants in the code), grouped
convs that are not depthwise, layers with weights we do not know, ops we do not know.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from mobile_compress.pruning.graph import OPAQUE, ZERO, ChannelGraph, LayerUse, UnionFind

# Functions that act on each element (or channel) alone: labels pass through unchanged.
_ELEMENTWISE = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "sigmoid",
    "sigmoid_", "silu", "gelu", "tanh", "elu", "leaky_relu", "dropout", "dropout2d", "clamp", "clamp_",
    "contiguous", "clone", "detach", "float", "to", "neg", "abs", "__neg__",
}
# Functions that reduce or pool space but keep channel c at position c ("fn" is how
# F.max_pool2d's boolean dispatch is named).
_POOLS = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "fn", "max_pool2d_with_indices"}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}
_POOLS_AND_REDUCTIONS = _POOLS | _REDUCTIONS
# Element-wise functions of two tensors: labels at the same position are coupled.
_BINARY = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "__add__", "__iadd__", "__mul__",
           "__imul__", "__radd__", "__rmul__", "__sub__", "__isub__", "maximum", "minimum"}
# Functions that only move elements: applied to the shadow as they are.
_MOVES = {"view", "reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze", "unflatten", "expand",
          "__getitem__", "chunk", "split", "cat", "concat", "pad", "narrow", "t", "movedim"}
_IGNORED_OUTPUT = (int, float, bool, torch.Size, type(None), str, torch.dtype, torch.device)


class _Tracer(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.uf = UnionFind()
        self.shadows: dict[int, tuple[Tensor, Tensor]] = {}  # id(tensor) -> (tensor kept alive, shadow)
        self.uses: dict[str, LayerUse] = {}
        self.calls: dict[str, int] = {}
        self.depth = 0  # > 0 inside a layer with weights: its inner functions are the layer's business
        self.busy = False  # our own bookkeeping must not be traced

    # ------------------------------------------------------------------ shadows

    def shadow(self, t: Tensor) -> Tensor:
        entry = self.shadows.get(id(t))
        if entry is not None and entry[0] is t:
            return entry[1]
        # A constant made inside forward: a scalar broadcasts, anything larger has a fixed shape.
        return torch.full(t.shape, ZERO if t.numel() == 1 else OPAQUE, dtype=torch.long)

    def set_shadow(self, t: Tensor, s: Tensor) -> None:
        self.shadows[id(t)] = (t, s)

    def fix_all(self, s: Tensor) -> None:
        for lab in torch.unique(s).tolist():
            self.uf.fix(int(lab))

    def opaque(self, t: Tensor) -> Tensor:
        return torch.full(t.shape, OPAQUE, dtype=torch.long)

    def channel_labels(self, s: Tensor, dim: int = 1) -> list[int] | None:
        """Per-channel labels if every element of channel c carries the same label, else None."""
        if s.dim() <= dim:
            return None
        rows = s.movedim(dim, -1).reshape(-1, s.shape[dim])
        if rows.shape[0] > 1 and not bool((rows == rows[:1]).all()):
            return None
        return rows[0].tolist()

    def broadcast(self, labels: list[int], like: Tensor, dim: int = 1) -> Tensor:
        shape = [1] * like.dim()
        shape[dim] = len(labels)
        return torch.tensor(labels, dtype=torch.long).view(shape).expand(like.shape).clone()

    # ------------------------------------------------------------------ functions

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth > 0 or self.busy:
            return out
        self.busy = True
        try:
            self.record(func, args, kwargs, out)
        finally:
            self.busy = False
        return out

    def record(self, func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, Tensor)]
        if not outs:
            return
        name = getattr(func, "__name__", "")
        ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, Tensor)]
        if name in _MOVES:
            self.move(name, func, args, kwargs, out, ins)
        elif name in _ELEMENTWISE and len(ins) == 1 and outs[0].shape == ins[0].shape:
            self.set_shadow(outs[0], self.shadow(ins[0]).clone())
        elif name in _BINARY and ins:
            self.binary(ins, outs[0])
        elif name in _POOLS_AND_REDUCTIONS and len(ins) == 1:
            self.pool(name, args, kwargs, ins[0], outs)
        elif not ins:  # a tensor made inside forward: its shape is a constant of the code
            for o in outs:
                self.set_shadow(o, torch.full(o.shape, ZERO if o.numel() == 1 else OPAQUE, dtype=torch.long))
        else:
            self.barrier(ins, outs)

    def barrier(self, ins: list[Tensor], outs: list[Tensor]) -> None:
        for t in ins:
            self.fix_all(self.shadow(t))
        for o in outs:
            self.set_shadow(o, self.opaque(o))

    def binary(self, ins: list[Tensor], out: Tensor) -> None:
        if len(ins) == 1:  # tensor op scalar
            self.set_shadow(out, self.shadow(ins[0]).clone())
            return
        a, b = (self.shadow(t) for t in ins[:2])
        try:
            a, b = torch.broadcast_tensors(a, b)
        except RuntimeError:
            self.barrier(ins, [out])
            return
        pairs = torch.unique(torch.stack([a.reshape(-1), b.reshape(-1)], 1), dim=0).tolist()
        for x, y in pairs:
            self.uf.union(int(x), int(y))
        merged = torch.where(a >= 0, a, b)
        merged = torch.where((a == OPAQUE) | (b == OPAQUE), torch.full_like(merged, OPAQUE), merged)
        if merged.shape != out.shape:
            self.barrier(ins, [out])
            return
        self.set_shadow(out, merged)

    def pool(self, name: str, args: tuple, kwargs: dict, x: Tensor, outs: list[Tensor]) -> None:
        s = self.shadow(x)
        if name in _REDUCTIONS:
            dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
            dims = [dims] if isinstance(dims, int) else dims
            if dims is None or any(d % x.dim() == 1 for d in dims):
                self.barrier([x], outs)
                return
        labels = self.channel_labels(s)
        out = outs[0]
        if labels is None or out.dim() < 2 or out.shape[1] != len(labels):
            self.barrier([x], outs)
            return
        for o in outs:  # max_pool with indices returns two tensors shaped alike
            self.set_shadow(o, self.broadcast(labels, o))

    def move(self, name: str, func: Callable, args: tuple, kwargs: dict, out: Any, ins: list[Tensor]) -> None:
        if name == "pad":
            self.pad(args, kwargs, out)
            return
        if name in ("split", "narrow") or (name == "__getitem__" and not _keeps_channels(args)):
            # Sizes or slices written as constants in the code: the channels they cut cannot change.
            for t in ins:
                self.fix_all(self.shadow(t))
        # Contiguous shadows: the real code made its tensor contiguous where a view needs it.
        swap = lambda a: self.shadow(a).contiguous() if isinstance(a, Tensor) else a  # noqa: E731
        try:
            shadow_out = func(*tree_map(swap, args), **tree_map(swap, kwargs))
        except Exception:  # noqa: BLE001 - an op we cannot mirror becomes a barrier
            self.barrier(ins, [o for o in tree_flatten(out)[0] if isinstance(o, Tensor)])
            return
        for o, s in zip(tree_flatten(out)[0], tree_flatten(shadow_out)[0]):
            if isinstance(o, Tensor) and isinstance(s, Tensor):
                self.set_shadow(o, s)
        if name == "chunk":
            self.couple_chunks(args, kwargs, tree_flatten(shadow_out)[0])
        elif name in ("view", "reshape", "unflatten") and ins:
            self.couple_split(self.shadow(ins[0]), tree_flatten(shadow_out)[0][0])

    def pad(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        x = args[0]
        widths = list(kwargs.get("pad", args[1] if len(args) > 1 else ()))
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        s = self.shadow(x)
        channel_from_end = x.dim() - 2  # pad widths list the last dimension first
        touches_channels = len(widths) > 2 * channel_from_end and any(widths[2 * channel_from_end:2 * channel_from_end + 2])
        if touches_channels and mode == "constant":
            # The pad sizes are constants of the code: the channels around them cannot change.
            self.fix_all(s)
            self.set_shadow(out, F.pad(s, widths, value=OPAQUE))
            return
        labels = self.channel_labels(s)
        if touches_channels or labels is None:
            self.barrier([x], [out])
            return
        self.set_shadow(out, self.broadcast(labels, out))

    def couple_chunks(self, args: tuple, kwargs: dict, pieces: list[Tensor]) -> None:
        x = args[0]
        dim = kwargs.get("dim", args[2] if len(args) > 2 else 0) % x.dim()
        if dim != 1:
            return
        per_piece = [self.channel_labels(p) for p in pieces]
        if any(p is None for p in per_piece) or len({len(p) for p in per_piece}) != 1:  # type: ignore[arg-type]
            self.fix_all(self.shadow(x))
            return
        for column in zip(*per_piece):  # type: ignore[misc]
            for lab in column[1:]:
                self.uf.union(column[0], lab)

    def couple_split(self, before: Tensor, after: Tensor) -> None:
        """(N, C, ...) viewed as (N, g, C/g, ...): the channel of each group at the same index goes together."""
        if before.dim() < 2 or after.dim() <= before.dim() or after.shape[0] != before.shape[0]:
            return
        c = before.shape[1]
        for k in range(3, after.dim() + 1):
            if math.prod(after.shape[1:k]) == c and tuple(after.shape[k:]) == tuple(before.shape[2:]):
                columns = after.reshape(after.shape[0], -1, after.shape[k - 1], *after.shape[k:])
                for j in range(columns.shape[2]):
                    labs = torch.unique(columns[:, :, j]).tolist()
                    for lab in labs[1:]:
                        self.uf.union(int(labs[0]), int(lab))
                return

    # ------------------------------------------------------------------ layers with weights

    def pre_hook(self, module: nn.Module, inputs: tuple) -> None:
        self.depth += 1

    def make_post_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            self.depth -= 1
            if self.depth > 0:
                return
            self.busy = True
            try:
                self.layer(name, module, inputs, output)
            finally:
                self.busy = False

        return hook

    def layer(self, name: str, module: nn.Module, inputs: tuple, out: Tensor) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
        if x is None or not isinstance(out, Tensor):
            self.barrier([t for t in inputs if isinstance(t, Tensor)], [o for o in tree_flatten(out)[0]
                                                                        if isinstance(o, Tensor)])
            return
        s = self.shadow(x)
        if self.calls[name] > 1 or not isinstance(module, _KNOWN):
            self.barrier([x], [out])  # shared or unknown layers keep their channels
            if name in self.uses:
                for lab in self.uses[name].in_labels + self.uses[name].out_labels:
                    self.uf.fix(lab)
            return
        if isinstance(module, nn.Linear):
            labels_in = self.channel_labels(s, dim=s.dim() - 1)
            if labels_in is None:
                self.barrier([x], [out])
                return
            labels_out = [self.uf.new() for _ in range(module.out_features)]
            self.uses[name] = LayerUse(name, "linear", labels_in, labels_out, spatial=out.numel() // module.out_features)
            self.set_shadow(out, self.broadcast(labels_out, out, dim=out.dim() - 1))
            return
        labels_in = self.channel_labels(s)
        if labels_in is None:
            self.barrier([x], [out])
            return
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            self.uses[name] = LayerUse(name, "bn", labels_in, list(labels_in))
            self.set_shadow(out, s.clone())
            return
        conv: nn.Conv2d = module  # type: ignore[assignment]
        spatial = out.numel() // conv.out_channels
        kernel = math.prod(conv.kernel_size)
        if conv.groups == 1:
            labels_out = [self.uf.new() for _ in range(conv.out_channels)]
            kind = "conv"
        elif conv.groups == conv.in_channels == conv.out_channels:
            labels_out, kind = list(labels_in), "dwconv"
        else:
            for lab in labels_in:
                self.uf.fix(lab)
            labels_out, kind = [self.uf.new(fixed=True) for _ in range(conv.out_channels)], "conv"
        self.uses[name] = LayerUse(name, kind, labels_in, labels_out, spatial, kernel, conv.groups)
        self.set_shadow(out, self.broadcast(labels_out, out))


_KNOWN = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)


def _keeps_channels(args: tuple) -> bool:
    """True if ``x[index]`` leaves the channel dimension (dim 1) whole."""
    index = args[1] if len(args) > 1 else None
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) < 2 or index[0] is Ellipsis:
        return len(index) == 1 and isinstance(index[0], slice) and index[0] == slice(None)
    return index[1] == slice(None) or index[1] is Ellipsis


def trace(model: nn.Module, example: Tensor) -> ChannelGraph:
    """Run ``model`` (eval mode, no grad) on ``example`` (batch 1) and return its channel graph."""
    if example.dim() < 2 or example.shape[0] != 1:
        raise ValueError(f"trace needs one example with batch size 1, got shape {tuple(example.shape)}")
    tracer = _Tracer()
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)) or isinstance(module, _KNOWN):
            handles.append(module.register_forward_pre_hook(tracer.pre_hook))
            handles.append(module.register_forward_hook(tracer.make_post_hook(name)))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    tracer.set_shadow(example, torch.full(example.shape, OPAQUE, dtype=torch.long))
    try:
        with torch.no_grad(), tracer:
            out = model(example)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    for o in tree_flatten(out)[0]:
        if isinstance(o, Tensor):
            tracer.fix_all(tracer.shadow(o))
    # Layers with weights that the forward pass never reached cannot be reasoned about.
    return ChannelGraph(tracer.uses, tracer.uf)
