"""One distillation run from names and paths: the job behind `mobile-compress distill` and the recipes.

It is a training run (``train_job``) of the student with a ``DistillationHook``; the
teacher's checkpoint supplies the defaults the student must share with it: the
normalisation of the images and, when the student takes another input size, the size the
batch is resized to for the teacher.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from mobile_compress.data import Normalization
from mobile_compress.distillation import DistillConfig, DistillationHook, load_teacher
from mobile_compress.training.job import TrainJob, TrainJobResult, run_train_job
from mobile_compress.training import TrainConfig


@dataclass
class DistillJob:
    """A student (zoo name + options) trained on ``data`` while distilling ``teacher`` (a checkpoint)."""

    teacher: str
    student: str
    data: str
    out_dir: str
    distill: DistillConfig = field(default_factory=DistillConfig)
    config: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    init: str | None = None
    resume: bool = False
    cache_dir: str | None = None
    storage_size: int | None = None
    normalization: str | None = None  # default: the teacher's
    augment: bool = True


def run_distill_job(job: DistillJob) -> TrainJobResult:
    teacher, meta = load_teacher(job.teacher)
    distill = job.distill
    size = job.image_size
    teacher_size = meta.input_size if isinstance(meta.input_size, int) else None
    if size is None:
        import models

        size = models.default_input_size(job.student, **job.options)
    if distill.teacher_input_size is None and teacher_size is not None and teacher_size != size:
        distill = replace(distill, teacher_input_size=teacher_size)
    norm: str | Normalization | None = job.normalization
    if norm is None and meta.normalization is not None:
        norm = Normalization.from_dict(meta.normalization)
    hook = DistillationHook(teacher, distill, teacher_labels=meta.labels)
    teacher_path = os.path.abspath(job.teacher)
    return run_train_job(TrainJob(
        model=job.student, data=job.data, out_dir=job.out_dir, config=job.config, options=dict(job.options),
        image_size=size, init=job.init, resume=job.resume, cache_dir=job.cache_dir,
        storage_size=job.storage_size, normalization=norm, hooks=[hook], augment=job.augment,
        extra={"distillation": {"teacher": teacher_path, "teacher_arch": meta.arch, **distill.to_dict()}},
    ))
