"""``prune(model, config, input_size) -> PruneResult``: one structured pruning step.

trace -> protect -> score -> allocate -> remove channels -> verify. The result holds the
physically smaller model and the ``{"kind": "prune", ...}`` record that rebuilds it
from the zoo model (``mobile_compress.structure``).
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from mobile_compress.counting import normalize_input_size
from mobile_compress.errors import UserError
from mobile_compress.pruning.allocate import allocate, removed_units
from mobile_compress.pruning.config import PruneConfig
from mobile_compress.pruning.cost import CostModel, LatencyTable
from mobile_compress.pruning.graph import ChannelGraph
from mobile_compress.pruning.importance import unit_scores
from mobile_compress.pruning.surgery import kept_channels, prune_model
from mobile_compress.pruning.trace import trace
from mobile_compress.pruning.verify import max_difference

VERIFY_TOLERANCE = 1e-3  # relative to the output's magnitude


@dataclass
class GroupReport:
    name: str
    layers: list[str]
    before: int
    after: int


@dataclass
class PruneResult:
    """The pruned model and what changed. Costs: ``*_before``/``*_after`` of this step."""

    model: nn.Module
    layers: dict[str, Any]  # layer name -> record for rebuild.apply
    groups: list[GroupReport]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    latency_before_ms: float | None
    latency_after_ms: float | None
    config: PruneConfig
    seconds: float
    verify_error: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def transform(self) -> dict[str, Any]:
        """The checkpoint.json entry that rebuilds this step (absolute channel counts)."""
        return {"kind": "prune", "layers": self.layers, "target": str(self.config.target),
                "criterion": self.config.criterion, "allocation": self.config.allocation,
                "multiple": self.config.multiple, "min_keep": self.config.min_keep, "protect": list(self.config.protect),
                "channels": {g.name: [g.before, g.after] for g in self.groups if g.after != g.before}}

    def summary(self) -> dict[str, Any]:
        return {"macs_before": self.macs_before, "macs_after": self.macs_after, "params_before": self.params_before,
                "params_after": self.params_after, "latency_before_ms": self.latency_before_ms,
                "latency_after_ms": self.latency_after_ms, "seconds": self.seconds, "verify_error": self.verify_error,
                "groups": [vars(g) for g in self.groups], "config": self.config.to_dict()}


def example_input(model: nn.Module, input_size: int | Sequence[int]) -> Tensor:
    """One random image of the model's input size, on the model's device (values do not matter to tracing)."""
    c, h, w = normalize_input_size(input_size if not isinstance(input_size, (tuple, list)) or len(input_size) != 2
                                   else (3, *input_size))
    ref = next(model.parameters())
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0)).to(ref.device, ref.dtype)


def build_graph(model: nn.Module, example: Tensor, protect: Iterable[str] = ()) -> ChannelGraph:
    """Trace and group; protected layers (name patterns) keep every channel."""
    graph = trace(model, example)
    patterns = list(protect)
    names = [n for n in graph.uses if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in graph.uses)]
    if unmatched:
        raise UserError(f"protect pattern {unmatched[0]!r} matches no layer with weights",
                        hint=f"layer names look like {', '.join(list(graph.uses)[:3])}; use fnmatch patterns, "
                             "e.g. 'features.0.*'")
    graph.build_groups(names)
    return graph


def prune(model: nn.Module, config: PruneConfig, input_size: int | Sequence[int], *,
          data: Iterable[tuple[Tensor, Tensor]] | None = None, latency: LatencyTable | None = None,
          reference: nn.Module | None = None, reference_fraction: float | None = None) -> PruneResult:
    """Prune ``model`` (left untouched) to ``config.target`` and return a smaller copy.

    ``data``: batches for the taylor criterion. ``latency``: the measured table for
    ``latency=`` targets. ``reference``/``reference_fraction`` let an iterative schedule
    aim at a fraction of the ORIGINAL network's cost while pruning an already pruned one:
    the target for this step becomes ``reference_fraction * cost(reference) / cost(model)``.
    """
    start = time.monotonic()
    example = example_input(model, input_size)
    graph = build_graph(model, example, config.protect)
    if not graph.groups:
        raise UserError("this model has no channels that can be pruned",
                        hint="check --protect: every layer is protected or coupled to the input/output")
    costs = CostModel(graph, model, latency if config.target.metric == "latency" else None)
    metric = costs.metric(config.target.metric)
    full = {g.index: g.size for g in graph.groups}
    fraction = config.target.fraction
    original_sizes = None
    if reference is not None and reference_fraction is not None:
        ref_graph = build_graph(reference, example_input(reference, input_size), config.protect)
        ref_costs = CostModel(ref_graph, reference, costs.latency)
        ref_full = ref_costs.metric(config.target.metric)({g.index: g.size for g in ref_graph.groups})
        fraction = min(1.0, reference_fraction * ref_full / metric(full))
        ref_sizes = {g.name: g.size for g in ref_graph.groups}
        original_sizes = {g.index: ref_sizes.get(g.name, g.size) for g in graph.groups}
    scores = unit_scores(model, graph, config.criterion, data, config.taylor_batches)
    alloc = allocate(graph, scores, metric, fraction, config.allocation, config.multiple, config.target.metric,
                     config.min_keep, original_sizes)
    removed = removed_units(graph, scores, alloc.keep)
    pruned, layers = prune_model(model, graph, removed)
    verify_error = None
    if config.verify:
        verify_error, scale = max_difference(model, pruned, graph, removed, example)
        if verify_error > VERIFY_TOLERANCE * (scale + 1e-12):
            raise RuntimeError(f"pruning bug: the pruned model differs from the masked original by {verify_error:g} "
                               f"(outputs up to {scale:g}); please report it with the model name")
    kept = kept_channels(graph, removed)
    groups = [GroupReport(g.name, g.layers, g.size * g.channels_per_unit, alloc.keep[g.index] * g.channels_per_unit)
              for g in graph.groups]
    lat = costs.latency_ms if costs.latency is not None else None
    return PruneResult(
        model=pruned, layers=layers, groups=groups,
        macs_before=costs.macs(full), macs_after=costs.macs(alloc.keep),
        params_before=costs.params(full), params_after=costs.params(alloc.keep),
        latency_before_ms=lat(full) if lat else None, latency_after_ms=lat(alloc.keep) if lat else None,
        config=config, seconds=time.monotonic() - start, verify_error=verify_error,
        info={"kept_layers": {n: [len(i), len(o)] for n, (i, o) in kept.items()}, "step_fraction": fraction})
