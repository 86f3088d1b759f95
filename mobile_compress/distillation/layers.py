"""Which layers to distil from and to, and capturing their outputs during a forward pass.

Defaults work for any architecture (zoo or user's), found by running one probe image:
a *stage* is the set of modules whose outputs share one spatial size; its representative is
the shallowest of them that finishes last (``layer1`` in a ResNet, ``features.6`` in
MobileNetV2, ``stage3`` in ShuffleNetV2).
Teacher and student stages are paired by their stride (input size / map size), so maps of
the same resolution meet; the hint pair is the deepest such pair (the last feature stage of
the teacher), attention transfer uses up to three of the deepest pairs. When no stride
matches (e.g. a 224-px teacher and a 32-px student), stages are paired from the end.
The RKD embedding is the input of the last layer with a weight matrix or kernel to run (the
classifier, also when QAT has wrapped it), pooled over space when it is a map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mobile_compress.errors import UserError

_SKIP = (nn.Identity, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout)
MAX_AT_PAIRS = 3
#: Prefix of a tap key that keeps a module's input (the RKD embedding is the classifier's input).
INPUT = "in:"


@dataclass(frozen=True)
class Stage:
    name: str
    channels: int
    size: tuple[int, int]


@dataclass
class Probe:
    """What one forward pass of a model shows: its stages, its last layer, every module's output shape."""

    stages: list[Stage]
    classifier: str  # the last module with a weight matrix or kernel to start its forward (the final layer)
    shapes: dict[str, tuple[int, ...]]  # module name -> output shape (tensor outputs only)
    output_shape: tuple[int, ...]
    input_size: tuple[int, int]

    def stride(self, stage: Stage) -> float:
        return self.input_size[0] / stage.size[0]


def probe(model: nn.Module, sample: torch.Tensor) -> Probe:
    """Run ``sample`` (1, C, H, W) through ``model`` in eval mode under no_grad and record what happened."""
    finished: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    started: list[str] = []  # modules holding a weight matrix or kernel, in the order their forward starts

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                finished.append((name, module, tuple(output.shape)))
        return record

    def start(name: str) -> Callable:
        def record(module: nn.Module, inputs) -> None:
            started.append(name)
        return record

    weighted = {n for n, m in model.named_modules() if n and any(p.ndim in (2, 4) for p in m.parameters())}
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    handles += [m.register_forward_pre_hook(start(n)) for n, m in model.named_modules() if n in weighted]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            output = model(sample)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    shapes = {n: s for n, _, s in finished}
    if not isinstance(output, torch.Tensor):
        raise UserError(f"{type(model).__name__} returns a {type(output).__name__}, not a tensor of logits",
                        hint="distil from and into models whose forward returns the logits tensor")
    return Probe(_stages(finished), started[-1] if started else "", shapes, tuple(output.shape),
                 tuple(sample.shape[-2:]))


def _stages(finished: list[tuple[str, nn.Module, tuple[int, ...]]]) -> list[Stage]:
    """Per output resolution, the shallowest module that finishes last, ordered as they finish."""
    by_size: dict[tuple[int, int], list[tuple[int, str, tuple[int, ...]]]] = {}
    for order, (name, module, shape) in enumerate(finished):
        if isinstance(module, _SKIP) or len(shape) != 4 or shape[-1] * shape[-2] <= 1:
            continue
        by_size.setdefault(shape[-2:], []).append((order, name, shape))
    chosen = []
    for items in by_size.values():
        depth = min(name.count(".") for _, name, _ in items)
        chosen.append([item for item in items if item[1].count(".") == depth][-1])
    return [Stage(name, shape[1], (shape[2], shape[3])) for _, name, shape in sorted(chosen)]


def paired_stages(student: Probe, teacher: Probe) -> list[tuple[Stage, Stage]]:
    """(student, teacher) stage pairs of equal stride, shallow to deep; from the end when none match."""
    by_stride = {round(student.stride(s), 3): s for s in student.stages}
    pairs = [(by_stride[round(teacher.stride(t), 3)], t) for t in teacher.stages
             if round(teacher.stride(t), 3) in by_stride]
    if not pairs:
        n = min(len(student.stages), len(teacher.stages))
        pairs = list(zip(student.stages[len(student.stages) - n:], teacher.stages[len(teacher.stages) - n:]))
    return pairs


def default_hint_layers(student: Probe, teacher: Probe) -> list[tuple[str, str]]:
    pairs = paired_stages(student, teacher)
    return [(pairs[-1][0].name, pairs[-1][1].name)] if pairs else []


def default_at_layers(student: Probe, teacher: Probe) -> list[tuple[str, str]]:
    return [(s.name, t.name) for s, t in paired_stages(student, teacher)[-MAX_AT_PAIRS:]]


def check_layer(model: nn.Module, name: str, role: str, field: str, where: str) -> nn.Module:
    """The named submodule, or a UserError listing close names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    import difflib

    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    raise UserError(f"{where}: {field} names {role} module {name!r}, which the {role} does not have",
                    hint=("did you mean " + ", ".join(close) + "? " if close else "")
                    + "use dotted names from model.named_modules()")


class FeatureTap:
    """Keeps the latest output (or input) of named modules, filled by forward hooks."""

    def __init__(self) -> None:
        self.values: dict[str, torch.Tensor] = {}
        self._handles: dict[str, tuple[nn.Module, torch.utils.hooks.RemovableHandle]] = {}

    def attach(self, model: nn.Module, keys: list[str]) -> None:
        """Hook the modules ``keys`` name (``"in:NAME"`` keeps NAME's input instead of its output).

        A module replaced since the last call (QAT wrapping, pruning) is hooked again.
        """
        modules = dict(model.named_modules())
        for key in keys:
            name = key[3:] if key.startswith(INPUT) else key
            module = modules[name]
            old = self._handles.get(key)
            if old is not None and old[0] is module:
                continue
            if old is not None:
                old[1].remove()
            if key.startswith(INPUT):
                handle = module.register_forward_pre_hook(self._pre(key))
            else:
                handle = module.register_forward_hook(self._post(key))
            self._handles[key] = (module, handle)

    def _post(self, name: str) -> Callable:
        def keep(module: nn.Module, args, output) -> None:
            self.values[name] = output
        return keep

    def _pre(self, name: str) -> Callable:
        def keep(module: nn.Module, args) -> None:
            self.values[name] = args[0]
        return keep

    def take(self, name: str) -> torch.Tensor:
        try:
            return self.values[name]
        except KeyError:
            raise RuntimeError(f"module {name!r} was not called in the last forward pass") from None

    def clear(self) -> None:
        self.values.clear()

    def detach(self) -> None:
        for _, handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        self.values.clear()
