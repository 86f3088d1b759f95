"""Structural edits a checkpoint records so it can be rebuilt without pickles.

A pruned, factorised or quantization-wrapped model is the zoo model plus a chain of
edits. ``checkpoint.json`` lists them in ``transforms`` (``[{"kind": "prune", ...}, ...]``);
loading builds the zoo model and replays each edit before the weights are loaded, so
the state_dict fits. Each kind names the function that replays it, as "module:function",
imported only when a checkpoint needs it (the core does not import every compressor).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from torch import nn

from mobile_compress.errors import UserError

# kind -> "module:function"; the function takes (model, spec) and returns the edited model.
TRANSFORMS: dict[str, str] = {
    "prune": "mobile_compress.pruning.rebuild:apply",
    "lowrank": "mobile_compress.lowrank.rebuild:apply",
    "qat": "mobile_compress.quantization.rebuild:apply",
}


def replay(model: nn.Module, transforms: list[Mapping[str, Any]], source: str) -> nn.Module:
    """Apply each recorded edit in order; errors name ``source`` (the checkpoint file) and the entry."""
    for i, spec in enumerate(transforms):
        kind = spec.get("kind") if isinstance(spec, Mapping) else None
        if kind not in TRANSFORMS:
            raise UserError(f"{source}: field 'transforms[{i}].kind' is {kind!r}, which this version cannot rebuild",
                            hint=f"known kinds: {', '.join(sorted(TRANSFORMS))}; upgrade mobile-compress if the "
                                 "checkpoint was written by a newer version")
        model = _function(kind)(model, spec)
    return model


def _function(kind: str) -> Callable[[nn.Module, Mapping[str, Any]], nn.Module]:
    module, name = TRANSFORMS[kind].split(":")
    return getattr(importlib.import_module(module), name)
