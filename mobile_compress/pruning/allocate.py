"""How many units each group keeps, so the network meets its cost target.

Widths are restricted to multiples of ``multiple`` channels (or the full width) that
mobile kernels run well, never below ``multiple``. Two strategies:

- global: start from the full network and repeatedly make the cut, among all groups'
  next allowed step down, that loses the least importance per unit of cost saved,
  until the target is met. With a latency table as the cost this is NetAdapt's
  per-layer, measurement-driven allocation (greedy, without a short fine-tune per
  candidate), and it steers pruning away from layers that are cheap on the device
  however many MACs they have;
- uniform: the same kept fraction for every group, the largest that meets the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

from mobile_compress.errors import UserError
from mobile_compress.pruning.graph import ChannelGraph, Group


@dataclass
class Allocation:
    keep: dict[int, int]  # group index -> units kept
    cost: float
    full_cost: float


def allowed_widths(group: Group, multiple: int, floor: float = 0.0) -> list[int]:
    """Unit counts a group may keep, ascending: multiples of the channel step, and the full size.

    ``floor`` (units) drops the narrower widths; the full size always stays.
    """
    step = max(1, multiple // math.gcd(multiple, group.channels_per_unit))
    values = list(range(step, group.size, step)) + [group.size]
    return [w for w in values if w >= floor - 1e-9] or [group.size]


def _next_down(widths: list[int], current: int) -> int | None:
    lower = [w for w in widths if w < current]
    return lower[-1] if lower else None


def allocate(graph: ChannelGraph, scores: Mapping[int, float], cost: Callable[[Mapping[int, int]], float],
             target_fraction: float, strategy: str, multiple: int, metric: str = "cost",
             min_keep: float = 0.0, original_sizes: Mapping[int, int] | None = None) -> Allocation:
    """Keep counts per group whose cost is at most ``target_fraction`` of the full network's.

    ``min_keep`` is a fraction of each group's ``original_sizes`` (units before the first step of an
    iterative schedule; default: its size now), so repeated steps do not compound the floor.
    """
    sizes = original_sizes or {}
    widths = {g.index: allowed_widths(g, multiple, min_keep * sizes.get(g.index, g.size)) for g in graph.groups}
    keep = {g.index: g.size for g in graph.groups}
    full = cost(keep)
    goal = target_fraction * full
    floor = {i: w[0] for i, w in widths.items()}
    smallest = cost(floor)
    if smallest > goal * (1 + 1e-9):
        raise UserError(
            f"cannot reach {metric} {target_fraction:g}: with every prunable layer at its minimum width "
            f"({multiple} channels" + (f", or {min_keep:g} of the layer" if min_keep else "")
            + f") the network keeps {smallest / full:.3f} of its {metric}",
            hint=f"ask for {metric}={math.ceil(smallest / full * 100) / 100:g} or more, lower --multiple"
                 + (", lower --min-keep" if min_keep else "") + ", or unprotect layers")
    if strategy == "uniform":
        keep = _uniform(graph, widths, cost, goal)
    else:
        keep = _greedy(graph, widths, scores, cost, goal, keep)
    return Allocation(keep, cost(keep), full)


def _uniform(graph: ChannelGraph, widths: dict[int, list[int]], cost: Callable, goal: float) -> dict[int, int]:
    def at(fraction: float) -> dict[int, int]:
        out = {}
        for g in graph.groups:
            fitting = [w for w in widths[g.index] if w <= fraction * g.size + 1e-9]
            out[g.index] = fitting[-1] if fitting else widths[g.index][0]
        return out

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if cost(at(mid)) <= goal:
            lo = mid
        else:
            hi = mid
    return at(lo)


def _greedy(graph: ChannelGraph, widths: dict[int, list[int]], scores: Mapping[int, float], cost: Callable,
            goal: float, keep: dict[int, int]) -> dict[int, int]:
    ranked = {g.index: sorted(scores.get(u, 0.0) for u in g.units) for g in graph.groups}  # ascending
    current = cost(keep)
    while current > goal:
        best = None
        for g in graph.groups:
            lower = _next_down(widths[g.index], keep[g.index])
            if lower is None:
                continue
            trial = dict(keep)
            trial[g.index] = lower
            saved = current - cost(trial)
            if saved <= 0:
                continue
            # The units that would go are the least important of those still kept.
            removed = g.size - lower
            lost = sum(ranked[g.index][g.size - keep[g.index]:removed])
            ratio = lost / saved
            if best is None or ratio < best[0]:
                best = (ratio, g.index, lower, current - saved)
        if best is None:
            break
        _, index, lower, current = best
        keep[index] = lower
    return keep


def removed_units(graph: ChannelGraph, scores: Mapping[int, float], keep: Mapping[int, int]) -> set[int]:
    """The least important units of each group beyond its kept count."""
    removed: set[int] = set()
    for g in graph.groups:
        order = sorted(g.units, key=lambda u: (scores.get(u, 0.0), u))
        removed.update(order[: g.size - keep[g.index]])
    return removed
