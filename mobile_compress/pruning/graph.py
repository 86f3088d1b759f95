"""The channel dependency graph: which channels of which layers must be pruned together.

Every channel a conv or linear layer produces gets an integer *label*. The tracer
follows labels through the forward pass (``trace.py``) and joins, in a union-find,
the labels whose pruning decisions are coupled: channels added in a residual, the
scale and the feature map of a squeeze-excitation block, channels that ShuffleNetV2's
``chunk`` and channel shuffle move in lock-step. A root of the union-find is one
*unit*: a set of channels that are kept or removed as one. Units whose channels meet
the same layers in the same roles form a *group* (a layer's channel dimension, as the
user thinks of it); allocation picks how many units of each group to keep, and the
importance criterion picks which.

Negative labels are not channels of any layer: ``ZERO`` is a constant (zero padding,
tensors created inside forward) and ``OPAQUE`` is something we cannot follow (the
network input, an unsupported op); whatever couples with ``OPAQUE`` is never pruned.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

ZERO = -1
OPAQUE = -2


class UnionFind:
    """Labels joined into units; a unit can be marked fixed (never pruned)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: list[bool] = []

    def new(self, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        """Couple two labels; coupling with OPAQUE fixes the other one."""
        if a == OPAQUE and b >= 0:
            self.fix(b)
        elif b == OPAQUE and a >= 0:
            self.fix(a)
        if a < 0 or b < 0:
            return
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb]

    def fix(self, a: int) -> None:
        if a >= 0:
            self.fixed[self.find(a)] = True

    def is_fixed(self, a: int) -> bool:
        return a < 0 or self.fixed[self.find(a)]


@dataclass
class LayerUse:
    """One call of a layer with weights: which label each input and output channel carries.

    ``kind``: "conv" (dense or grouped), "dwconv" (depthwise: output channel i is input
    channel i), "linear" or "bn". ``spatial``: output positions per channel (for MACs).
    """

    name: str
    kind: str
    in_labels: list[int]
    out_labels: list[int]
    spatial: int = 1
    kernel: int = 1
    groups: int = 1


@dataclass
class Group:
    """Units that meet the same layers in the same roles; ``units`` are union-find roots."""

    index: int
    units: list[int]
    signature: tuple[tuple[str, str, int], ...]  # (layer, role, channels per unit)

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def name(self) -> str:
        producers = [layer for layer, role, _ in self.signature if role == "out"]
        first = producers[0] if producers else self.signature[0][0]
        return first if len(producers) <= 1 else f"{first} (+{len(producers) - 1} coupled)"

    @property
    def layers(self) -> list[str]:
        return sorted({layer for layer, _, _ in self.signature})

    @property
    def channels_per_unit(self) -> int:
        """How many channels of one layer a unit holds (ShuffleNet couples several of one layer)."""
        counts = [n for _, role, n in self.signature if role == "out"] or [n for _, _, n in self.signature]
        return min(counts)


@dataclass
class ChannelGraph:
    """The traced network: layer uses, the union-find over labels and the prunable groups."""

    uses: dict[str, LayerUse]
    uf: UnionFind
    groups: list[Group] = field(default_factory=list)

    def build_groups(self, protected: Iterable[str] = ()) -> None:
        """Fix the units that touch a protected layer, then group the free units by signature."""
        protected = set(protected)
        for use in self.uses.values():
            if use.name in protected:
                # A conv or linear layer keeps its outputs; a depthwise conv or BatchNorm keeps its channels.
                for label in use.out_labels + (use.in_labels if use.kind in ("dwconv", "bn") else []):
                    self.uf.fix(label)
        roles: dict[int, Counter] = {}
        for use in self.uses.values():
            entries = [("out", lab) for lab in use.out_labels] if use.kind in ("conv", "linear") else []
            entries += [("in", lab) for lab in use.in_labels] if use.kind in ("conv", "linear") else []
            entries += [("ch", lab) for lab in use.out_labels] if use.kind in ("dwconv", "bn") else []
            for role, lab in entries:
                if lab < 0 or self.uf.is_fixed(lab):
                    continue
                roles.setdefault(self.uf.find(lab), Counter())[(use.name, role)] += 1
        by_sig: dict[tuple, list[int]] = {}
        for root, counter in roles.items():
            if not any(role == "out" for (_, role) in counter):
                continue  # no layer produces it (cannot happen for a traced conv net; kept for safety)
            sig = tuple(sorted((layer, role, n) for (layer, role), n in counter.items()))
            by_sig.setdefault(sig, []).append(root)
        order = {name: i for i, name in enumerate(self.uses)}
        sigs = sorted(by_sig, key=lambda s: min(order[layer] for layer, _, _ in s))
        self.groups = [Group(i, sorted(by_sig[s]), s) for i, s in enumerate(sigs)]

    def kept(self, label: int, removed: set[int]) -> bool:
        return label < 0 or self.uf.find(label) not in removed

    def kept_indices(self, labels: list[int], removed: set[int]) -> list[int]:
        return [i for i, lab in enumerate(labels) if self.kept(lab, removed)]
