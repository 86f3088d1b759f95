"""How much each unit (a set of coupled channels) matters, by a registered criterion (``criteria.py``).

A unit's score sums its channels' scores in every layer that produces them, so a
residual channel shared by ten blocks counts ten filters. Scores are then divided by
their group's mean, which makes groups comparable for global allocation (a 3x3 conv's
filters have larger norms than a 1x1's for no reason that matters).
"""
from __future__ import annotations

from itertools import islice
from typing import Iterable

from torch import Tensor, nn

from mobile_compress.errors import UserError
from mobile_compress.pruning.criteria import ScoredLayer, get_criterion
from mobile_compress.pruning.graph import ChannelGraph


def scored_layers(model: nn.Module, graph: ChannelGraph) -> list[ScoredLayer]:
    """The layers of ``graph`` with the unit of each output channel (-1: never pruned)."""
    modules = dict(model.named_modules())
    uf = graph.uf
    return [ScoredLayer(use.name, use.kind, modules[use.name],
                        tuple(-1 if uf.is_fixed(lab) else uf.find(lab) for lab in use.out_labels))
            for use in graph.uses.values()]


def raw_scores(model: nn.Module, graph: ChannelGraph, criterion: str,
               batches: Iterable[tuple[Tensor, Tensor]] | None = None, max_batches: int = 8) -> dict[int, float]:
    """Sum of the criterion's channel scores per unit (units it scores nowhere are left out)."""
    importance = get_criterion(criterion)
    if importance.needs_data and batches is None:
        raise UserError(f"the {criterion} criterion needs data, and none was given",
                        hint="pass --data (training images), or choose --criterion l1")
    layers = scored_layers(model, graph)
    given = islice(batches, max_batches) if importance.needs_data and batches is not None else None
    channel_scores = importance(model, layers, given)
    scores: dict[int, float] = {}
    for layer in layers:
        if layer.name not in channel_scores:
            continue
        values = channel_scores[layer.name]
        if not isinstance(values, Tensor) or values.shape != (len(layer.units),):
            raise TypeError(f"criterion {criterion!r} must score each of the {len(layer.units)} output channels of "
                            f"{layer.name} with a 1-d tensor, got {getattr(values, 'shape', type(values).__name__)}")
        for unit, v in zip(layer.units, values.tolist()):
            if unit >= 0:
                scores[unit] = scores.get(unit, 0.0) + float(v)
    return scores


def unit_scores(model: nn.Module, graph: ChannelGraph, criterion: str,
                batches: Iterable[tuple[Tensor, Tensor]] | None = None, max_batches: int = 8) -> dict[int, float]:
    """Score of every free unit, normalised by its group's mean (1.0 = an average unit of its group)."""
    raw = raw_scores(model, graph, criterion, batches, max_batches)
    out: dict[int, float] = {}
    for group in graph.groups:
        values = [raw.get(u, 0.0) for u in group.units]
        mean = sum(values) / len(values) if values else 0.0
        for u, v in zip(group.units, values):
            out[u] = v / mean if mean > 0 else 0.0
    return out
