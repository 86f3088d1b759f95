"""``factorize(model, config) -> FactorizeResult``: low-rank factorisation of a whole model.

Linear and 1x1 conv layers get a truncated SVD (two layers through rank r); kxk convs
get Tucker-2 (1x1 reduce, kxk core, 1x1 expand). Ranks come from an energy threshold
or a whole-model target (see ``ranks.py``). The result is a physically smaller
module plus the ``{"kind": "lowrank", ...}`` entry that rebuilds it from a checkpoint
(``mobile_compress.lowrank.rebuild``).
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from mobile_compress.counting import count_macs, count_parameters, format_count, normalize_input_size
from mobile_compress.lowrank.candidates import Candidate, Skipped, find_candidates
from mobile_compress.lowrank.config import FactorizeConfig, Target
from mobile_compress.lowrank.decompose import relative_error, truncated_svd, tucker2
from mobile_compress.lowrank.layers import build, fill, kernel_text
from mobile_compress.lowrank.ranks import allocate, energy_ranks, kept_at, kept_curves, saves
from mobile_compress.report import Column, format_table, write_json

TRANSFORM_KIND = "lowrank"


@dataclass
class LayerReport:
    """One factorised layer: what it was, what it became, and how well the factors fit.

    ``relative_error`` is ||W - W'||_F / ||W||_F of the weight; ``energy_kept`` is the
    share of squared singular values the ranks keep, per rank entry.
    """

    name: str
    method: str
    ranks: list[int]
    weight_shape: str
    original_params: int
    new_params: int
    original_macs: int
    new_macs: int
    relative_error: float
    energy_kept: list[float]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayerReport":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class FactorizeResult:
    """The factorised model (a copy; the input model is untouched) and the report on it.

    ``transform`` is the entry to append to ``CheckpointMeta.transforms``.
    """

    model: nn.Module
    config: FactorizeConfig
    layers: list[LayerReport]
    skipped: list[Skipped]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    transform: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        return format_layers(self.layers, self.params_before, self.params_after, self.macs_before, self.macs_after)

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write ``to_dict()`` to ``path`` (atomically)."""
        return write_json(path, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (everything but the model)."""
        return {
            "config": self.config.to_dict(),
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "params_fraction": self.params_after / self.params_before if self.params_before else None,
            "macs_fraction": self.macs_after / self.macs_before if self.macs_before else None,
            "layers": [asdict(r) for r in self.layers],
            "skipped": [asdict(s) for s in self.skipped],
            "transform": self.transform,
        }


def factorize(model: nn.Module, config: FactorizeConfig) -> FactorizeResult:
    """Factorise a copy of ``model`` as ``config`` says; the input model is left as it was."""
    config.validate()
    shape = normalize_input_size(config.input_size)  # type: ignore[arg-type]
    model = copy.deepcopy(model)
    params_before, macs_before = count_parameters(model), count_macs(model, shape)
    candidates, skipped = find_candidates(model, shape, config.include, config.exclude)
    curves = {c.name: kept_curves(c) for c in candidates}
    if isinstance(config.target, Target):
        total = macs_before if config.target.metric == "macs" else params_before
        chosen = allocate(candidates, curves, config.target, total, config.multiple)
    else:
        assert config.energy is not None
        chosen = {}
        for c in candidates:
            ranks = energy_ranks(c, curves[c.name], config.energy, config.multiple)
            if ranks is not None:
                chosen[c.name] = ranks
    reports = []
    for c in candidates:
        if c.name not in chosen:
            skipped.append(Skipped(c.name, _why_left_whole(c, config)))
            continue
        reports.append(_replace_layer(model, c, chosen[c.name], kept_at(curves[c.name], chosen[c.name]),
                                      config.hooi_iterations))
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    skipped.sort(key=lambda s: order.get(s.name, len(order)))
    transform = {"kind": TRANSFORM_KIND,
                 "layers": {r.name: {"method": r.method, "ranks": list(r.ranks)} for r in reports}}
    return FactorizeResult(model=model, config=config, layers=reports, skipped=skipped,
                           params_before=params_before, params_after=count_parameters(model),
                           macs_before=macs_before, macs_after=count_macs(model, shape), transform=transform)


def _replace_layer(model: nn.Module, c: Candidate, ranks: list[int], kept: list[float],
                   hooi_iterations: int) -> LayerReport:
    original = c.module
    weight = original.weight.detach()
    if c.shape.method == "svd":
        factors = truncated_svd(weight.reshape(weight.shape[0], -1), ranks[0])
        approx = factors.reconstruct().reshape(weight.shape)
    else:
        r_in, r_out = ranks
        factors = tucker2(weight, r_out, r_in, hooi_iterations)
        approx = factors.reconstruct()
    layer = build(original, c.shape.method, ranks)
    fill(layer, original, factors)
    set_submodule(model, c.name, layer)
    params, macs = c.shape.original_cost()
    new_params, new_macs = c.shape.factorized_cost(ranks)
    return LayerReport(name=c.name, method=c.shape.method, ranks=list(ranks), weight_shape=kernel_text(c.shape),
                       original_params=params, new_params=new_params, original_macs=macs, new_macs=new_macs,
                       relative_error=relative_error(weight, approx), energy_kept=kept)


def _why_left_whole(c: Candidate, config: FactorizeConfig) -> str:
    smallest = [min(config.multiple, top) for top in c.shape.full_ranks]
    if not saves(c.shape, smallest):
        return f"too small: no rank (a multiple of {config.multiple}) saves both MACs and parameters"
    if config.target is None:
        return f"keeping {config.energy:g} of the energy needs ranks too high to save both MACs and parameters"
    return "left whole: the target was met without it"


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where ``name`` (dotted, e.g. ``layer1.0.conv1``) is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def format_layers(layers: list[LayerReport], params_before: int, params_after: int, macs_before: int,
                  macs_after: int) -> str:
    """The per-layer table with a whole-model line at the bottom."""
    rows: list[dict[str, Any]] = [{
        "name": r.name, "method": r.method, "shape": r.weight_shape, "ranks": "/".join(map(str, r.ranks)),
        "params": f"{format_count(r.original_params)} -> {format_count(r.new_params)}",
        "macs": f"{format_count(r.original_macs)} -> {format_count(r.new_macs)}",
        "energy": "/".join(f"{e:.3f}" for e in r.energy_kept), "error": r.relative_error,
    } for r in layers]
    rows.append({"name": f"whole model ({len(layers)} layers factorised)",
                 "params": f"{format_count(params_before)} -> {format_count(params_after)} "
                           f"({params_after / max(params_before, 1):.2f}x)",
                 "macs": f"{format_count(macs_before)} -> {format_count(macs_after)} "
                         f"({macs_after / max(macs_before, 1):.2f}x)"})
    return format_table(rows, [
        Column("name", "layer"),
        Column("method", "method"),
        Column("shape", "weight"),
        Column("ranks", "ranks", str, ">"),
        Column("params", "params", str, ">"),
        Column("macs", "MACs", str, ">"),
        Column("energy", "energy kept", str, ">"),
        Column("error", "rel. error", lambda v: f"{v:.4f}", ">"),
    ])


__all__ = ["FactorizeResult", "LayerReport", "factorize", "format_layers", "set_submodule"]
