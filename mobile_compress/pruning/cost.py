"""Cost of a pruned network as a function of how many units each group keeps.

Allocation tries thousands of candidate widths, so costs are computed from counts,
not by building models: a layer's kept input/output channels are its fixed channels
plus, for each group, (channels per unit) x (units kept). ``LatencyTable`` is the
per-layer latency model that ``profiler.latency_table`` measures; the core only
evaluates it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import nn

from mobile_compress.errors import UserError
from mobile_compress.pruning.graph import ChannelGraph

Keep = Mapping[int, int]  # group index -> units kept


@dataclass
class LayerCount:
    """A layer's channel counts: fixed ones plus per-group multiplicities."""

    name: str
    kind: str
    fixed_in: int
    fixed_out: int
    per_group_in: dict[int, int]
    per_group_out: dict[int, int]
    spatial: int
    kernel: int
    groups: int
    bias: bool

    def channels(self, keep: Keep) -> tuple[int, int]:
        cin = self.fixed_in + sum(n * keep[g] for g, n in self.per_group_in.items())
        cout = self.fixed_out + sum(n * keep[g] for g, n in self.per_group_out.items())
        return cin, cout

    def macs(self, cin: int, cout: int) -> int:
        if self.kind == "bn":
            return 0
        if self.kind == "dwconv":
            return self.spatial * cout * self.kernel
        return self.spatial * cout * (cin // self.groups) * self.kernel

    def params(self, cin: int, cout: int) -> int:
        if self.kind == "bn":
            return 2 * cout
        if self.kind == "dwconv":
            return cout * self.kernel + (cout if self.bias else 0)
        return cout * (cin // self.groups) * self.kernel + (cout if self.bias else 0)


@dataclass
class LayerLatency:
    """Predicted milliseconds of one layer: ``ms_per_mac * MACs + ms_per_output * output elements``."""

    ms_per_mac: float
    ms_per_output: float = 0.0


@dataclass
class LatencyTable:
    """Measured per-layer latency model of one architecture on one runtime (see profiler.latency_table).

    ``base_ms`` is what pruning cannot change (stem input, pooling, the interpreter's
    overhead); ``layers`` maps layer names to their coefficients. ``info`` records how
    it was measured (device, threads, conversions, fit quality).
    """

    base_ms: float
    layers: dict[str, LayerLatency]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"base_ms": self.base_ms, "layers": {k: asdict(v) for k, v in self.layers.items()}, "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "latency table") -> "LatencyTable":
        try:
            return cls(float(data["base_ms"]), {str(k): LayerLatency(**v) for k, v in data["layers"].items()},
                       dict(data.get("info", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"{source}: not a latency table ({type(err).__name__}: {err})",
                            hint="build one with `mobile-compress latency-table` or profiler.latency_table") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"latency table {p} does not exist", hint="pass the JSON file the latency table builder wrote")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{p} is not valid JSON ({err.msg}, line {err.lineno})", hint="rebuild the table") from None
        return cls.from_dict(data, str(p))

    def layer_ms(self, layer: LayerCount, cin: int, cout: int) -> float:
        coeff = self.layers.get(layer.name)
        if coeff is None:
            return 0.0
        return coeff.ms_per_mac * layer.macs(cin, cout) + coeff.ms_per_output * cout * layer.spatial


class CostModel:
    """MACs, parameters and (given a table) latency of any per-group keep vector."""

    def __init__(self, graph: ChannelGraph, model: nn.Module, latency: LatencyTable | None = None) -> None:
        group_of = {root: g.index for g in graph.groups for root in g.units}
        sizes = {g.index: g.size for g in graph.groups}
        modules = dict(model.named_modules())
        self.layers: list[LayerCount] = []
        for use in graph.uses.values():
            counts = []
            for labels in (use.in_labels, use.out_labels):
                fixed, per = 0, {}
                for lab in labels:
                    g = group_of.get(graph.uf.find(lab)) if lab >= 0 else None
                    if g is None:
                        fixed += 1
                    else:
                        per[g] = per.get(g, 0) + 1
                # Every unit of a group meets this layer the same number of times (that is what a group is).
                counts.append((fixed, {g: n // sizes[g] for g, n in per.items()}))
            bias = getattr(modules[use.name], "bias", None) is not None
            self.layers.append(LayerCount(use.name, use.kind, counts[0][0], counts[1][0], counts[0][1], counts[1][1],
                                          use.spatial, use.kernel, use.groups, bias))
        self.full: dict[int, int] = {g.index: g.size for g in graph.groups}
        self.latency = latency
        full_params = sum(p.numel() for p in model.parameters())
        self.other_params = full_params - self._layer_params(self.full)
        if latency is not None:
            missing = [layer.name for layer in self.layers if layer.kind != "bn" and layer.name not in latency.layers]
            if missing:
                raise UserError(f"the latency table has no entry for {len(missing)} layer(s) (e.g. {missing[0]})",
                                hint="build the table for this model (same architecture and options)")

    def _layer_params(self, keep: Keep) -> int:
        return sum(layer.params(*layer.channels(keep)) for layer in self.layers)

    def macs(self, keep: Keep) -> int:
        return sum(layer.macs(*layer.channels(keep)) for layer in self.layers)

    def params(self, keep: Keep) -> int:
        return self.other_params + self._layer_params(keep)

    def latency_ms(self, keep: Keep) -> float:
        if self.latency is None:
            raise UserError("a latency target needs a latency table",
                            hint="pass --latency-table FILE, or let `mobile-compress prune` measure one")
        return self.latency.base_ms + sum(self.latency.layer_ms(layer, *layer.channels(keep)) for layer in self.layers)

    def metric(self, name: str) -> Callable[[Keep], float]:
        return {"macs": self.macs, "params": self.params, "latency": self.latency_ms}[name]
