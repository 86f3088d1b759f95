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
from mobile_compress.training.checkpoint import META_FILE
from mobile_compress.training.config import DEFAULT_RULE
from mobile_compress.training.distributed import torchrun_env
from mobile_compress.training.eval_job import EvalJob, EvalJobResult, run_eval_job
from mobile_compress.training.job import TrainJob, TrainJobResult, run_train_job

__all__ = ["CheckpointMeta", "DEFAULT_RULE", "EpochStats", "EvalResult", "evaluate", "EvalJob", "EvalJobResult", "run_eval_job",
           "Hook", "load_checkpoint", "META_FILE", "read_meta", "run_train_job", "save_checkpoint",
           "torchrun_env", "TrainConfig", "Trainer", "TrainJob", "TrainJobResult", "TrainResult"]
