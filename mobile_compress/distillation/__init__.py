"""Knowledge distillation: logit KD, hint layers with 1x1 adapters, attention transfer, relational KD.

``distillation_hook(teacher, config, student)`` returns a Trainer hook, so any training run
(plain, pruning fine-tune, QAT) can distil from any teacher into any student.
"""
from __future__ import annotations

from mobile_compress.distillation.config import LOSSES, DistillConfig, parse_losses
from mobile_compress.distillation.hook import DistillationHook, distillation_hook
from mobile_compress.distillation.teacher import freeze, load_teacher
from mobile_compress.distillation.job import DistillJob, run_distill_job

__all__ = ["distillation_hook", "DistillationHook", "DistillConfig", "DistillJob", "freeze", "load_teacher",
           "LOSSES", "parse_losses", "run_distill_job"]
