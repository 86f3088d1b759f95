"""Structured channel pruning that removes channels for real (issue 5).

``prune(model, PruneConfig(target="macs=0.5"), input_size) -> PruneResult``; the
iterative prune / fine-tune schedule behind ``mobile-compress prune`` is in
``schedule.py``; checkpoints rebuild through ``rebuild.apply``. The dependency graph
(``graph.py``, ``trace.py``) keeps the network valid across residual adds, depthwise
convs, concatenation, squeeze-excitation and ShuffleNetV2's split and channel shuffle.
"""
from mobile_compress.pruning.api import PruneResult, build_graph, example_input, prune
from mobile_compress.pruning.config import PruneConfig, Target, parse_target
from mobile_compress.pruning.cost import CostModel, LatencyTable, LayerLatency

__all__ = ["CostModel", "LatencyTable", "LayerLatency", "PruneConfig", "PruneResult", "Target", "build_graph",
           "example_input", "parse_target", "prune"]
