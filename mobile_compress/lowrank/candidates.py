"""Which layers can be factorised, and at what spatial size each one runs.

Low-rank factorisation applies to dense layers: ``nn.Linear`` and ``nn.Conv2d`` with
``groups=1``. Depthwise and grouped convolutions are skipped (their weight has no
channel-mixing matrix to factorise), as are layers inside an already factorised
layer and layers that a forward pass never calls. The spatial sizes come from one
zero image, because a layer's MACs (and whether a factorisation saves any) depend on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
from torch import nn

from mobile_compress.counting import InputSize, normalize_input_size
from mobile_compress.errors import UserError
from mobile_compress.lowrank.layers import FactorizedLayer, LayerShape, shape_of


@dataclass(frozen=True)
class Candidate:
    """A layer that may be factorised."""

    name: str
    module: nn.Module
    shape: LayerShape


@dataclass(frozen=True)
class Skipped:
    """A conv or linear layer left alone, and why."""

    name: str
    reason: str


def find_candidates(model: nn.Module, input_size: InputSize, include: tuple[str, ...] = (),
                    exclude: tuple[str, ...] = ()) -> tuple[list[Candidate], list[Skipped]]:
    """Eligible layers in model order, and the conv/linear layers skipped with their reason.

    ``include`` / ``exclude`` are fnmatch patterns on module names; a pattern that names
    no conv or linear layer is a UserError (it is almost always a typo).
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    inside = {name for name, m in model.named_modules() if isinstance(m, FactorizedLayer)}
    names = [name for name, _ in layers]
    for option, patterns in (("--include (include)", include), ("--exclude (exclude)", exclude)):
        for pattern in patterns:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise UserError(f"{option} pattern {pattern!r} matches no conv or linear layer of the model",
                                hint=f"patterns are fnmatch-style on module names, e.g. {_examples(names)}")
    positions = _positions(model, input_size, [m for _, m in layers])
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for name, module in layers:
        reason = _reason_to_skip(name, module, positions, inside, include, exclude)
        if reason:
            skipped.append(Skipped(name, reason))
        else:
            in_pos, out_pos = positions[id(module)]
            candidates.append(Candidate(name, module, shape_of(module, in_pos, out_pos)))
    return candidates, skipped


def _reason_to_skip(name: str, module: nn.Module, positions: dict[int, tuple[int, int]], inside: set[str],
                    include: tuple[str, ...], exclude: tuple[str, ...]) -> str:
    if any(name.startswith(f"{outer}.") for outer in inside):
        return "already factorised"
    if include and not any(fnmatchcase(name, p) for p in include):
        return "not matched by --include"
    if any(fnmatchcase(name, p) for p in exclude):
        return "excluded by --exclude"
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        kind = "depthwise" if module.groups == module.in_channels else "grouped"
        return f"{kind} conv (groups={module.groups}): no channel-mixing matrix to factorise"
    if id(module) not in positions:
        return "not called in the forward pass"
    return ""


def _positions(model: nn.Module, input_size: InputSize, modules: list[nn.Module]) -> dict[int, tuple[int, int]]:
    """id(module) -> (input positions, output positions) for one zero image, summed over calls."""
    shape = normalize_input_size(input_size)
    found: dict[int, tuple[int, int]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            in_pos = inputs[0].numel() // module.in_features
            out_pos = output.numel() // module.out_features
        else:
            in_pos = inputs[0].shape[-1] * inputs[0].shape[-2]
            out_pos = output.shape[-1] * output.shape[-2]
        old = found.get(id(module), (0, 0))
        found[id(module)] = (old[0] + in_pos, old[1] + out_pos)

    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    except RuntimeError as err:
        raise UserError(f"the model cannot take a {shape[1]}x{shape[2]} input ({str(err).splitlines()[0]})",
                        hint="pass the input size the model was trained at (input_size / the checkpoint's)") from None
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return found


def _examples(names: list[str]) -> str:
    if not names:
        return "conv1 or 'layer1.*'"
    picks = list(dict.fromkeys([names[0], names[-1], f"{names[len(names) // 2].split('.')[0]}.*"]))
    return ", ".join(repr(p) for p in picks)
