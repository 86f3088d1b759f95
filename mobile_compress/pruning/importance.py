"""How much each unit (a set of coupled channels) matters.

A unit's score sums its channels' scores in every layer that produces them, so a
residual channel shared by ten blocks counts ten filters. Scores are then divided by
their group's mean, which makes groups comparable for global allocation (a 3x3 conv's
filters have larger norms than a 1x1's for no reason that matters).

- l1 / l2: norm of the filter that produces the channel (each conv/linear output row,
  depthwise filters included);
- bn_scale: |gamma| of the BatchNorm layers on the channel (Network Slimming); units
  with no BatchNorm (SqueezeNet) fall back to l1;
- taylor: first-order Taylor expansion of the loss (Molchanov et al. 2019): per batch,
  (sum over the channel's weights, BN scale and shift of weight * gradient) squared,
  summed over batches. Needs data.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from mobile_compress.errors import UserError
from mobile_compress.pruning.graph import ChannelGraph


def _rows(weight: Tensor) -> Tensor:
    return weight.detach().reshape(weight.shape[0], -1)


def _add(scores: dict[int, float], graph: ChannelGraph, labels: list[int], values: Iterable[float]) -> None:
    for lab, v in zip(labels, values):
        if lab >= 0 and not graph.uf.is_fixed(lab):
            root = graph.uf.find(lab)
            scores[root] = scores.get(root, 0.0) + float(v)


def norm_scores(model: nn.Module, graph: ChannelGraph, p: int) -> dict[int, float]:
    modules = dict(model.named_modules())
    scores: dict[int, float] = {}
    for use in graph.uses.values():
        if use.kind == "bn":
            continue
        rows = _rows(modules[use.name].weight)
        _add(scores, graph, use.out_labels, rows.abs().sum(1).tolist() if p == 1 else rows.norm(dim=1).tolist())
    return scores


def bn_scores(model: nn.Module, graph: ChannelGraph) -> dict[int, float]:
    modules = dict(model.named_modules())
    scores: dict[int, float] = {}
    for use in graph.uses.values():
        if use.kind == "bn" and modules[use.name].weight is not None:
            _add(scores, graph, use.out_labels, modules[use.name].weight.detach().abs().tolist())
    fallback = norm_scores(model, graph, 1)
    with_bn = set(scores)
    for root, v in fallback.items():
        if root not in with_bn:
            scores[root] = v
    return scores


def taylor_scores(model: nn.Module, graph: ChannelGraph, batches: Iterable[tuple[Tensor, Tensor]],
                  max_batches: int) -> dict[int, float]:
    """Gradients on up to ``max_batches`` batches, in eval mode (BatchNorm statistics stay untouched)."""
    modules = dict(model.named_modules())
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
        for x, y in batches:
            if n >= max_batches:
                break
            model.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x.to(device)), torch.as_tensor(y).to(device))
            loss.backward()
            for use in graph.uses.values():
                m = modules[use.name]
                contrib = _rows(m.weight * m.weight.grad).sum(1)
                if use.kind == "bn" and m.bias is not None:
                    contrib = contrib + (m.bias * m.bias.grad).detach()
                if use.kind != "bn" and getattr(m, "bias", None) is not None:
                    contrib = contrib + (m.bias * m.bias.grad).detach()
                accum[use.name] = accum.get(use.name, 0) + contrib.detach() ** 2
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
    scores: dict[int, float] = {}
    for use in graph.uses.values():
        _add(scores, graph, use.out_labels, accum[use.name].tolist())
    return scores


def unit_scores(model: nn.Module, graph: ChannelGraph, criterion: str,
                batches: Iterable[tuple[Tensor, Tensor]] | None = None, max_batches: int = 8) -> dict[int, float]:
    """Score of every free unit, normalised by its group's mean (1.0 = an average unit of its group)."""
    if criterion == "l1":
        raw = norm_scores(model, graph, 1)
    elif criterion == "l2":
        raw = norm_scores(model, graph, 2)
    elif criterion == "bn_scale":
        raw = bn_scores(model, graph)
    elif criterion == "taylor":
        raw = taylor_scores(model, graph, batches or (), max_batches)
    else:
        raise UserError(f"unknown importance criterion {criterion!r}", hint="use l1, l2, bn_scale or taylor")
    out: dict[int, float] = {}
    for group in graph.groups:
        values = [raw.get(u, 0.0) for u in group.units]
        mean = sum(values) / len(values) if values else 0.0
        for u, v in zip(group.units, values):
            out[u] = v / mean if mean > 0 else 0.0
    return out
