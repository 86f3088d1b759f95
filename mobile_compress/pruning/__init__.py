"""Structured channel pruning that removes channels for real (issue 5).

``prune(model, PruneConfig(target="macs=0.5"), input_size) -> PruneResult``; channel
importance criteria are classes registered by name (``register_criterion``, ``criteria.py``); the
iterative prune / fine-tune schedule behind ``mobile-compress prune`` is in
``job.py``; checkpoints rebuild through ``rebuild.apply``. The dependency graph
(``graph.py``, ``trace.py``) keeps the network valid across residual adds, depthwise
convs, concatenation, squeeze-excitation and ShuffleNetV2's split and channel shuffle.
"""
from mobile_compress.pruning.api import PruneResult, build_graph, example_input, prune
from mobile_compress.pruning.config import PruneConfig, Target, parse_target
from mobile_compress.pruning.cost import CostModel, LatencyTable, LayerLatency
from mobile_compress.pruning.allocate import allowed_widths
from mobile_compress.pruning.config import ALLOCATIONS, CRITERIA
from mobile_compress.pruning.criteria import Importance, ScoredLayer, register_criterion
from mobile_compress.pruning.cost import LayerCount
from mobile_compress.pruning.job import PruneJob, default_finetune_config, run_prune_job
from mobile_compress.pruning.surgery import prune_model

__all__ = ["ALLOCATIONS", "allowed_widths", "build_graph", "CostModel", "CRITERIA", "default_finetune_config",
           "example_input", "Importance", "LatencyTable", "LayerCount", "LayerLatency", "parse_target", "prune",
           "prune_model", "PruneConfig", "PruneJob", "PruneResult", "register_criterion", "run_prune_job",
           "ScoredLayer", "Target"]
