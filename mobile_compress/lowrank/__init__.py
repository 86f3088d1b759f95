"""Low-rank factorisation: truncated SVD for linear and 1x1 conv layers, Tucker-2 for kxk convs.

    >>> from mobile_compress.lowrank import FactorizeConfig, factorize
    >>> result = factorize(model, FactorizeConfig(input_size=32, target="macs=0.5"))
    >>> print(result.table()); result.model          # a smaller nn.Module
    >>> meta.transforms.append(result.transform)     # so load_checkpoint rebuilds it

Depthwise and grouped convs are skipped. ``job.py`` adds checkpoints, evaluation and
fine-tuning (the `mobile-compress factorize` command).
"""
from __future__ import annotations

from mobile_compress.lowrank.config import FactorizeConfig, Target, parse_target
from mobile_compress.lowrank.factorize import FactorizeResult, LayerReport, factorize
from mobile_compress.lowrank.layers import FactorizedLayer

__all__ = ["FactorizeConfig", "FactorizeResult", "FactorizedLayer", "LayerReport", "Target", "factorize",
           "parse_target"]
