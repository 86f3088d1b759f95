"""Build a layer like another one with fewer channels: shared by pruning and by rebuilding.

A pruned checkpoint is the zoo model with some layers swapped for narrower twins.
``resized`` makes the twin (same kernel, stride, padding, eps, bias...), so the
surgery that copies kept weights and ``rebuild.apply`` that replays a checkpoint's
record make exactly the same modules, and the record only needs channel counts.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mobile_compress.errors import UserError

KINDS = {nn.Conv2d: "conv", nn.Linear: "linear", nn.BatchNorm2d: "bn", nn.BatchNorm1d: "bn"}


def layer_record(module: nn.Module) -> dict[str, Any]:
    """The channel counts that define a resized layer (what checkpoint.json stores)."""
    if isinstance(module, nn.Conv2d):
        return {"type": "conv", "in": module.in_channels, "out": module.out_channels, "groups": module.groups}
    if isinstance(module, nn.Linear):
        return {"type": "linear", "in": module.in_features, "out": module.out_features}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return {"type": "bn", "channels": module.num_features}
    raise TypeError(f"cannot resize a {type(module).__name__}")


def resized(module: nn.Module, record: dict[str, Any]) -> nn.Module:
    """A fresh layer like ``module`` with the channel counts of ``record`` (same dtype and device)."""
    ref = next(iter(module.parameters()), None)
    if ref is None:
        ref = next(iter(module.buffers()), torch.zeros(()))
    kw = {"device": ref.device, "dtype": ref.dtype if ref.is_floating_point() else None}
    if isinstance(module, nn.Conv2d):
        new: nn.Module = nn.Conv2d(record["in"], record["out"], module.kernel_size, module.stride, module.padding,
                                   module.dilation, record["groups"], module.bias is not None, module.padding_mode, **kw)
    elif isinstance(module, nn.Linear):
        new = nn.Linear(record["in"], record["out"], module.bias is not None, **kw)
    else:
        new = type(module)(record["channels"], module.eps, module.momentum, module.affine,
                           module.track_running_stats, **kw)
    new.train(module.training)
    return new


def replace_layer(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def check_record(name: str, module: nn.Module | None, record: Any, source: str) -> None:
    """UserError naming the entry if a recorded layer does not fit the model being rebuilt."""
    where = f"{source}: field 'transforms[prune].layers.{name}'"
    if module is None:
        raise UserError(f"{where} names a layer the model does not have",
                        hint="the checkpoint was pruned from another architecture; fix 'arch'/'options' or re-prune")
    kind = next((k for t, k in KINDS.items() if isinstance(module, t)), None)
    keys = {"conv": ("in", "out", "groups"), "linear": ("in", "out"), "bn": ("channels",)}.get(kind or "", ())
    if not isinstance(record, dict) or record.get("type") != kind or not all(
            isinstance(record.get(k), int) and not isinstance(record.get(k), bool) and record[k] >= 1 for k in keys):
        raise UserError(f"{where} is {record!r}; expected {{'type': '{kind}', " + ", ".join(f"'{k}': N" for k in keys)
                        + "} with positive integers", hint="re-save the checkpoint with mobile-compress prune")
    if kind == "conv" and (record["in"] % record["groups"] or record["out"] % record["groups"]):
        raise UserError(f"{where}: groups {record['groups']} does not divide the channel counts {record['in']}/"
                        f"{record['out']}", hint="re-save the checkpoint with mobile-compress prune")
