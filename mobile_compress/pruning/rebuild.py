"""Replay a pruning record: ``apply(model, spec)`` narrows the zoo model's layers so the
pruned state_dict loads, with no pickles (registered in ``mobile_compress.structure``).

The record (``{"kind": "prune", "layers": {name: {"type": "conv", "in": .., "out": ..,
"groups": ..}, ...}, ...}``) holds absolute channel counts, so several prune entries in a
row (pruning a pruned checkpoint) replay in order without knowing each other.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from mobile_compress.errors import UserError
from mobile_compress.pruning.layers import check_record, replace_layer, resized


def apply(model: nn.Module, spec: Mapping[str, Any], source: str = "checkpoint.json") -> nn.Module:
    layers = spec.get("layers")
    if not isinstance(layers, Mapping):
        raise UserError(f"{source}: field 'transforms[prune].layers' is missing or not an object",
                        hint="re-save the checkpoint with mobile-compress prune")
    modules = dict(model.named_modules())
    for name, record in layers.items():
        check_record(name, modules.get(name), record, source)
        replace_layer(model, name, resized(modules[name], record))
    return model
