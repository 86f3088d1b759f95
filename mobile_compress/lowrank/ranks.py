"""Choosing ranks: a per-layer energy threshold, or a whole-model MAC/parameter target.

A layer's "loss" at some ranks is the fraction of its squared singular values that
the ranks drop (summed over both modes for Tucker-2): 0 at full rank, growing as the
rank shrinks. For a target, every layer's options are reduced to their lower convex
hull in (cost saved, loss), and the cheapest steps by loss per saved MAC (or
parameter) are taken across the model until the target is met: the usual greedy
solution of "least damage for a given budget".
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import torch

from mobile_compress.errors import UserError
from mobile_compress.lowrank.candidates import Candidate
from mobile_compress.lowrank.config import Target
from mobile_compress.lowrank.decompose import energy_kept, rank_for_kept, spectrum, unfold
from mobile_compress.lowrank.layers import LayerShape


def kept_curves(candidate: Candidate) -> list[torch.Tensor]:
    """Kept-energy curves, one per rank in data-flow order (svd: [W]; tucker2: [input mode, output mode])."""
    weight = candidate.module.weight.detach()
    if candidate.shape.method == "svd":
        return [energy_kept(spectrum(weight.reshape(weight.shape[0], -1)))]
    return [energy_kept(spectrum(unfold(weight, 1))), energy_kept(spectrum(unfold(weight, 0)))]


def kept_at(curves: list[torch.Tensor], ranks: list[int]) -> list[float]:
    """Share of energy each rank keeps (a rank past a curve's end keeps everything)."""
    return [float(c[min(r, len(c)) - 1]) for c, r in zip(curves, ranks)]


def loss_at(curves: list[torch.Tensor], ranks: list[int]) -> float:
    """Share of energy dropped at ``ranks``, summed over the modes: 0 at full rank."""
    return sum(1.0 - k for k in kept_at(curves, ranks))


def saves(shape: LayerShape, ranks: list[int]) -> bool:
    """True when the factorised layer has fewer parameters and fewer MACs than the original."""
    params, macs = shape.factorized_cost(ranks)
    old_params, old_macs = shape.original_cost()
    return params < old_params and macs < old_macs


def round_up(rank: int, multiple: int, limit: int) -> int:
    return min(math.ceil(rank / multiple) * multiple, limit)


def energy_ranks(candidate: Candidate, curves: list[torch.Tensor], energy: float, multiple: int) -> list[int] | None:
    """The smallest ranks (rounded up to ``multiple``) that keep ``energy`` per mode; None if they save nothing."""
    ranks = [round_up(rank_for_kept(c, energy), multiple, top)
             for c, top in zip(curves, candidate.shape.full_ranks)]
    return ranks if saves(candidate.shape, ranks) else None


@dataclass(frozen=True)
class Option:
    ranks: tuple[int, ...]
    saved: int  # cost saved against the original layer, in the target's metric
    loss: float


def options(candidate: Candidate, curves: list[torch.Tensor], metric: str, multiple: int) -> list[Option]:
    """Every rank choice (multiples of ``multiple``, or the limit) that saves both MACs and parameters."""
    shape = candidate.shape
    values = [sorted({*range(multiple, top, multiple), top}) for top in shape.full_ranks]
    grid: list[tuple[int, ...]] = [()]
    for vals in values:
        grid = [g + (v,) for g in grid for v in vals]
    index = 0 if metric == "params" else 1
    original = shape.original_cost()[index]
    return [Option(ranks, original - shape.factorized_cost(list(ranks))[index], loss_at(curves, list(ranks)))
            for ranks in grid if saves(shape, list(ranks))]


def lower_hull(points: list[Option]) -> list[Option]:
    """The options on the lower convex hull of (saved, loss), starting from "not factorised" (0, 0).

    Along the hull the loss per extra unit saved only grows, so taking hull steps in
    order of that slope, across all layers, is the greedy optimum.
    """
    start = Option((), 0, 0.0)
    pts = sorted(points, key=lambda o: (o.saved, o.loss))
    hull = [start]
    for p in pts:
        if p.saved <= hull[-1].saved:
            continue  # same or less saved for at least as much loss (sorted by loss within equal saved)
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
            hull.pop()
        hull.append(p)
    return hull


def _cross(a: Option, b: Option, c: Option) -> float:
    """> 0 when a -> b -> c turns left (convex from below)."""
    return (b.saved - a.saved) * (c.loss - a.loss) - (b.loss - a.loss) * (c.saved - a.saved)


def allocate(candidates: list[Candidate], curves: dict[str, list[torch.Tensor]], target: Target,
             model_total: int, multiple: int) -> dict[str, list[int]]:
    """Ranks per layer name so that the model keeps at most ``target.fraction`` of ``model_total``."""
    budget = target.fraction * model_total
    hulls = {c.name: lower_hull(options(c, curves[c.name], target.metric, multiple)) for c in candidates}
    total = float(model_total)
    position = {name: 0 for name in hulls}
    heap: list[tuple[float, int, str]] = []
    order = itertools.count()  # breaks ties between equal slopes: first pushed, first taken

    def push(name: str) -> None:
        hull, i = hulls[name], position[name]
        if i + 1 < len(hull):
            step_saved = hull[i + 1].saved - hull[i].saved
            heapq.heappush(heap, ((hull[i + 1].loss - hull[i].loss) / step_saved, next(order), name))

    for name in hulls:
        push(name)
    while total > budget and heap:
        _, _, name = heapq.heappop(heap)
        hull, i = hulls[name], position[name]
        total -= hull[i + 1].saved - hull[i].saved
        position[name] = i + 1
        push(name)
    if total > budget:
        reachable = math.ceil(total / model_total * 1000) / 1000
        raise UserError(
            f"--target (target) {target} cannot be reached: factorising every eligible layer as far as "
            f"ranks in multiples of {multiple} allow still keeps {total / model_total:.4f} of the model's "
            f"{target.metric}", hint=f"ask for {target.metric}={reachable:.3f} or more, lower --multiple, "
                                     "or include more layers")
    return {name: list(hulls[name][i].ranks) for name, i in position.items() if i > 0}
