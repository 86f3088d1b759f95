"""Importance criteria: one interface, a registry by name, and the built-in ones.

A criterion scores the output channels of every layer that makes prunable channels
(higher = more worth keeping); ``importance.unit_scores`` sums those scores over the
channels of each unit. Adding one takes a class, not an edit here::

    @register_criterion
    class Random:
        name = "random"
        needs_data = False

        def __call__(self, model, layers, batches=None):
            return {layer.name: torch.rand(len(layer.units)) for layer in layers}

after which ``PruneConfig(criterion="random")``, ``--criterion random`` and a recipe's
``criterion: random`` accept it (``CRITERIA`` follows the registry).

Built-in:

- l1 / l2: norm of the filter that produces the channel (each conv/linear output row,
  depthwise filters included);
- bn_scale: |gamma| of the BatchNorm layers on the channel (Network Slimming); units
  with no BatchNorm (SqueezeNet) fall back to l1;
- taylor: first-order Taylor expansion of the loss (Molchanov et al. 2019): per batch,
  (sum over the channel's weights, BN scale and shift of weight * gradient) squared,
  summed over batches. Needs data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from mobile_compress.errors import UserError

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class ScoredLayer:
    """A layer whose output channels a criterion scores.

    ``kind``: "conv", "dwconv" (depthwise), "linear" or "bn" (scales channels another
    layer produced). ``units``: for each output channel, the unit it is pruned with, or
    -1 where it is never pruned; channels of one unit are kept or removed together.
    """

    name: str
    kind: str
    module: nn.Module
    units: tuple[int, ...]


@runtime_checkable
class Importance(Protocol):
    """What a registered criterion class provides; instances are made with no arguments.

    ``__call__`` returns, for the layers it scores, one score per output channel
    (a tensor of ``len(layer.units)`` values); layers it leaves out add nothing to their
    units. ``batches`` (at most ``PruneConfig.taylor_batches`` of (images, labels)) are
    given only to a criterion with ``needs_data``.
    """

    name: str
    needs_data: bool

    def __call__(self, model: nn.Module, layers: Sequence[ScoredLayer],
                 batches: Batches | None = None) -> Mapping[str, Tensor]: ...


_REGISTRY: dict[str, type] = {}


def register_criterion(cls: type) -> type:
    """Make the criterion class ``cls`` available by its ``name``; usable as a decorator."""
    if not isinstance(cls, type):
        raise TypeError(f"register_criterion takes a class, got {cls!r:.80}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"{cls.__qualname__}.name must be a word (letters, digits, _ . -), got {name!r}")
    if not isinstance(getattr(cls, "needs_data", None), bool):
        raise ValueError(f"{cls.__qualname__}.needs_data must be True or False")
    if not any("__call__" in vars(k) for k in cls.__mro__):  # every class is callable: look for the method
        raise ValueError(f"{cls.__qualname__} must define __call__(model, layers, batches)")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"criterion {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def get_criterion(name: str) -> Importance:
    """A fresh instance of the criterion registered as ``name``."""
    if name not in _REGISTRY:
        raise UserError(f"unknown importance criterion {name!r}", hint=f"use one of {', '.join(CRITERIA)}")
    return _REGISTRY[name]()


class _RegisteredNames(Sequence[str]):
    """The registered names, in registration order, read when used (argparse choices, recipe checks)."""

    def __getitem__(self, index):  # type: ignore[override]
        return list(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


CRITERIA: Sequence[str] = _RegisteredNames()


def _rows(weight: Tensor) -> Tensor:
    return weight.detach().reshape(weight.shape[0], -1)


@register_criterion
class L1Norm:
    name = "l1"
    needs_data = False
    p = 1

    def __call__(self, model: nn.Module, layers: Sequence[ScoredLayer],
                 batches: Batches | None = None) -> dict[str, Tensor]:
        return {layer.name: self.norms(layer) for layer in layers if layer.kind != "bn"}

    def norms(self, layer: ScoredLayer) -> Tensor:
        rows = _rows(layer.module.weight)
        return rows.abs().sum(1) if self.p == 1 else rows.norm(dim=1)


@register_criterion
class L2Norm(L1Norm):
    name = "l2"
    p = 2


@register_criterion
class BNScale:
    name = "bn_scale"
    needs_data = False

    def __call__(self, model: nn.Module, layers: Sequence[ScoredLayer],
                 batches: Batches | None = None) -> dict[str, Tensor]:
        scaled = [layer for layer in layers if layer.kind == "bn" and layer.module.weight is not None]
        scores = {layer.name: layer.module.weight.detach().abs() for layer in scaled}
        with_bn = {u for layer in scaled for u in layer.units}
        l1 = L1Norm()
        for layer in layers:  # units without a BatchNorm: the l1 norm of the filters that make them
            if layer.kind != "bn":
                norms = l1.norms(layer)
                mask = torch.tensor([u not in with_bn for u in layer.units], dtype=torch.bool, device=norms.device)
                scores[layer.name] = torch.where(mask, norms, 0.0)
        return scores


@register_criterion
class Taylor:
    name = "taylor"
    needs_data = True

    def __call__(self, model: nn.Module, layers: Sequence[ScoredLayer],
                 batches: Batches | None = None) -> dict[str, Tensor]:
        """Gradients in eval mode (BatchNorm statistics stay untouched)."""
        device = next(model.parameters()).device
        params = [p for p in model.parameters()]
        requires = [p.requires_grad for p in params]
        modes = [(m, m.training) for m in model.modules()]
        accum: dict[str, Tensor] = {}
        n = 0
        try:
            model.eval()
            for p in params:
                p.requires_grad_(True)
            for x, y in batches or ():
                model.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x.to(device)), torch.as_tensor(y).to(device))
                loss.backward()
                for layer in layers:
                    m = layer.module
                    contrib = _rows(m.weight * m.weight.grad).sum(1)
                    if getattr(m, "bias", None) is not None:
                        contrib = contrib + (m.bias * m.bias.grad).detach()
                    accum[layer.name] = accum.get(layer.name, 0) + contrib.detach() ** 2
                n += 1
        finally:
            model.zero_grad(set_to_none=True)
            for p, r in zip(params, requires):
                p.requires_grad_(r)
            for m, training in modes:
                m.training = training
        if n == 0:
            raise UserError("the taylor criterion needs data, and none was given",
                            hint="pass --data (training images), or choose --criterion l1")
        return accum
