"""Training engine: config, optimiser and schedule, hooks for compression stages,
evaluation, checkpoints (state_dict + JSON) and multi-GPU training via torchrun.

It depends on the model zoo and the data package only; converters, the profiler,
the Android harness and the CLI build on it, never the other way round.
"""
from __future__ import annotations

from mobile_compress.training.checkpoint import CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from mobile_compress.training.config import TrainConfig
from mobile_compress.training.engine import EpochStats, Trainer, TrainResult
from mobile_compress.training.evaluate import EvalResult, evaluate
from mobile_compress.training.hooks import Hook

__all__ = [
    "CheckpointMeta",
    "EpochStats",
    "EvalResult",
    "Hook",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "read_meta",
    "save_checkpoint",
]
