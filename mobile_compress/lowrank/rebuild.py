"""Replay a ``{"kind": "lowrank", "layers": {...}}`` checkpoint entry on a freshly built model.

``load_checkpoint`` builds the zoo model, calls ``apply`` (through
``mobile_compress.structure``), then loads the state_dict, which now fits. The
structure comes from the same ``layers.build`` that factorisation used, so the two
can never disagree.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from mobile_compress.errors import UserError
from mobile_compress.lowrank.factorize import set_submodule
from mobile_compress.lowrank.layers import METHODS, build

_HINT = "the checkpoint.json 'transforms' entry of kind 'lowrank' was edited or written by another version; " \
        "re-save the checkpoint with mobile-compress factorize"


def apply(model: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    """Replace each listed layer by its factorised structure (fresh weights); returns the model."""
    layers = spec.get("layers")
    if not isinstance(layers, Mapping):
        raise UserError(f"lowrank transform: field 'layers' is {type(layers).__name__}, expected an object "
                        "of layer name -> {method, ranks}", hint=_HINT)
    for name, entry in layers.items():
        where = f"lowrank transform: layer {name!r}"
        if not isinstance(entry, Mapping) or entry.get("method") not in METHODS or not isinstance(
                entry.get("ranks"), list):
            raise UserError(f"{where}: expected {{'method': one of {', '.join(METHODS)}, 'ranks': [int, ...]}}, "
                            f"found {entry!r:.80}", hint=_HINT)
        try:
            original = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"{where} is not a module of this model", hint=_HINT) from None
        if not isinstance(original, (nn.Linear, nn.Conv2d)) or getattr(original, "groups", 1) != 1:
            raise UserError(f"{where} is a {type(original).__name__}, not a linear or groups=1 conv layer",
                            hint=_HINT)
        try:
            replacement = build(original, entry["method"], entry["ranks"])
        except ValueError as err:
            raise UserError(f"{where}: {err}", hint=_HINT) from None
        set_submodule(model, name, replacement)
    return model
