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
from mobile_compress.lowrank.config import DEFAULT_MULTIPLE
from mobile_compress.lowrank.job import FactorizeJob, default_finetune_config, run_factorize_job

__all__ = ["default_finetune_config", "DEFAULT_MULTIPLE", "factorize", "FactorizeConfig", "FactorizedLayer",
           "FactorizeJob", "FactorizeResult", "LayerReport", "parse_target", "run_factorize_job", "Target"]
