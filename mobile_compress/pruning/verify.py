"""Check a pruning for index mistakes: the pruned model must equal the original with the
removed channels silenced.

Silencing a channel (zero its filter, bias and BatchNorm scale and shift, everywhere its
label appears) leaves the original architecture computing exactly what the narrower
model computes, provided every channel went where the graph says. A mismatch means the
dependency graph got a coupling wrong, so it is a bug, not a user error.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from mobile_compress.pruning.graph import ChannelGraph


@torch.no_grad()
def silenced(model: nn.Module, graph: ChannelGraph, removed: set[int]) -> nn.Module:
    """A copy of ``model`` whose removed channels are exactly zero wherever they are produced."""
    masked = copy.deepcopy(model)
    modules = dict(masked.named_modules())
    for name, use in graph.uses.items():
        gone = [i for i, lab in enumerate(use.out_labels) if not graph.kept(lab, removed)]
        if not gone:
            continue
        m = modules[name]
        idx = torch.tensor(gone, dtype=torch.long)
        if use.kind == "bn":
            m.weight[idx] = 0.0
            m.bias[idx] = 0.0
        else:
            m.weight[idx] = 0.0
            if m.bias is not None:
                m.bias[idx] = 0.0
    return masked


@torch.no_grad()
def max_difference(original: nn.Module, pruned: nn.Module, graph: ChannelGraph, removed: set[int],
                   example: torch.Tensor) -> tuple[float, float]:
    """(largest |output difference| between the silenced original and the pruned model, largest |output|
    of the silenced original), in eval mode; the models' train/eval modes are left as they were."""
    reference = silenced(original, graph, removed).eval()
    modes = [(m, m.training) for m in pruned.modules()]
    pruned.eval()
    try:
        expected = reference(example)
        return float((expected - pruned(example)).abs().max()), float(expected.abs().max())
    finally:
        for m, training in modes:
            m.training = training
