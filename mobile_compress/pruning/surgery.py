"""Remove channels for real: copy the kept slices of every affected layer into narrower layers.

Input and output channel indices of each layer come from the labels the tracer recorded,
so a channel that a shuffle moved is removed where it actually sits.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mobile_compress.pruning.graph import ChannelGraph
from mobile_compress.pruning.layers import layer_record, replace_layer, resized


def kept_channels(graph: ChannelGraph, removed: set[int]) -> dict[str, tuple[list[int], list[int]]]:
    """Layer name -> (kept input indices, kept output indices)."""
    return {name: (graph.kept_indices(use.in_labels, removed), graph.kept_indices(use.out_labels, removed))
            for name, use in graph.uses.items()}


@torch.no_grad()
def prune_model(model: nn.Module, graph: ChannelGraph, removed: set[int]) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned copy of ``model`` and the layer records (for ``rebuild.apply``) of the layers that changed."""
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    records: dict[str, Any] = {}
    for name, (keep_in, keep_out) in kept_channels(graph, removed).items():
        use, old = graph.uses[name], modules[name]
        if len(keep_in) == len(use.in_labels) and len(keep_out) == len(use.out_labels):
            continue
        record = layer_record(old)
        if use.kind == "bn":
            record["channels"] = len(keep_out)
        elif use.kind == "linear":
            record.update({"in": len(keep_in), "out": len(keep_out)})
        elif use.kind == "dwconv":
            record.update({"in": len(keep_out), "out": len(keep_out), "groups": len(keep_out)})
        else:
            record.update({"in": len(keep_in), "out": len(keep_out)})
        new = resized(old, record)
        out_idx = torch.tensor(keep_out, dtype=torch.long)
        in_idx = torch.tensor(keep_in, dtype=torch.long)
        if use.kind == "bn":
            for key in ("weight", "bias", "running_mean", "running_var"):
                src = getattr(old, key, None)
                if src is not None:
                    getattr(new, key).copy_(src[out_idx])
            if getattr(old, "num_batches_tracked", None) is not None:
                new.num_batches_tracked.copy_(old.num_batches_tracked)
        else:
            weight = old.weight[out_idx]
            if use.kind in ("conv", "linear") and use.groups == 1:
                weight = weight[:, in_idx]
            new.weight.copy_(weight)
            if old.bias is not None:
                new.bias.copy_(old.bias[out_idx])
        replace_layer(pruned, name, new)
        records[name] = layer_record(new)
    return pruned, records
