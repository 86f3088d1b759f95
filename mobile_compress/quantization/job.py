"""Quantize a checkpoint: PTQ (calibrate) or QAT (calibrate, then train with the QAT schedule).

Both write a checkpoint of the fake-quant model whose ``meta.transforms`` records
the preparation, so ``load_checkpoint`` rebuilds the simulation and the converters
turn it into an int8 .tflite with exactly its weights and ranges
(``converters.range_transfer``). QAT runs on the project's Trainer; extra hooks (e.g.
distillation from a teacher) are passed through ``hooks``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from mobile_compress.data import Normalization, open_dataset
from mobile_compress.errors import UserError
from mobile_compress.quantization.calibrate import calibrate
from mobile_compress.quantization.hook import QatHook
from mobile_compress.quantization.prepare import prepare
from mobile_compress.quantization.rebuild import is_quantized, spec_for
from mobile_compress.training import (EvalResult, Hook, TrainConfig, Trainer, TrainResult, evaluate,
                                      load_checkpoint, save_checkpoint)

METHODS = ("qat", "ptq")


def default_qat_config() -> TrainConfig:
    """A short fine-tune at a low learning rate: QAT starts from a trained model."""
    return TrainConfig(epochs=2, lr=0.005, weight_decay=5e-5, warmup_epochs=0.0, optimizer="sgd")


@dataclass
class QuantizeJob:
    """What to quantize, how, and where to write it.

    ``data``: the training data (calibration and QAT) with a test split for
    validation; defaults to the checkpoint's. ``calib_images``: images for calibration.
    ``freeze_bn_at`` / ``freeze_observers_at``: the QAT schedule (fractions of training).
    ``hooks``: more training hooks for QAT, e.g. distillation from a teacher
    (``mobile_compress.distillation``), which then shapes the loss of the fake-quant student.
    """

    checkpoint: str
    out_dir: str
    method: str = "qat"
    data: str | None = None
    config: TrainConfig = field(default_factory=default_qat_config)
    calib_images: int = 512
    freeze_bn_at: float = 0.5
    freeze_observers_at: float = 0.75
    cache_dir: str | None = None
    resume: bool = False
    hooks: Sequence[Hook] = ()
    train_images: int | None = None  # QAT on this many training images, spread over the set (a budget)
    eval_images: int | None = None  # validate on this many test images, spread over the split (a budget)
    augment: bool = True  # random crops/flips on the QAT images (off for data they do not suit)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown quantization method {self.method!r}", hint="use qat or ptq")
        if self.calib_images < 1:
            raise UserError(f"calib_images is {self.calib_images}, expected >= 1", hint="e.g. 512")


@dataclass
class QuantizeJobResult:
    checkpoint: Path  # the quantized (fake-quant) checkpoint
    method: str
    float_eval: EvalResult
    quantized_eval: EvalResult
    calib_images: int
    train: TrainResult | None = None


def run_quantize_job(job: QuantizeJob) -> QuantizeJobResult:
    job.validate()
    model, meta = load_checkpoint(job.checkpoint)
    if is_quantized(meta):
        raise UserError(f"{job.checkpoint} is already quantized (its checkpoint.json lists a 'qat' transform)",
                        hint="quantize the float checkpoint it was made from")
    data = job.data or meta.extra.get("data")
    if not isinstance(data, str) or not data:
        raise UserError(f"{job.checkpoint} does not say which data it was trained on",
                        hint="pass --data DIR (an image folder, an .npz file or 'builtin')")
    size = meta.input_size if isinstance(meta.input_size, int) else meta.input_size[0]
    norm = Normalization.from_dict(meta.normalization) if meta.normalization else None
    opened = dict(image_size=size, normalization=norm, cache_dir=job.cache_dir)
    calib_set = open_dataset(data, split="train", train=False, **opened)
    val_set = open_dataset(data, split="test", train=False, **opened)
    if job.eval_images is not None and job.eval_images < len(val_set):
        val_set = _spread(val_set, job.eval_images)
    if meta.labels and list(calib_set.classes) != list(meta.labels):
        raise UserError(f"the classes of {data} differ from those {job.checkpoint} was trained on",
                        hint="quantize with the data the model was trained on (same class folders)")
    float_eval = evaluate(model, val_set)
    h, w = (meta.input_size, meta.input_size) if isinstance(meta.input_size, int) else meta.input_size
    shape = (1, 3, int(h), int(w))
    qmodel = prepare(model, shape)
    used = calibrate(qmodel, calib_set, job.calib_images)
    qmeta = replace(meta, transforms=[*meta.transforms, spec_for(job.method, shape)], metrics={},
                    extra={**meta.extra, "data": os.path.abspath(data) if os.path.exists(data) else data,
                           "quantized_from": str(Path(job.checkpoint).resolve()),
                           "float_top1": float_eval.top1, "calib_images": used})
    out = Path(job.out_dir)
    train_result = None
    if job.method == "ptq":
        checkpoint = out / "checkpoint"
        quantized_eval = evaluate(qmodel, val_set)
        qmeta.metrics.update({"val_top1": quantized_eval.top1, "val_top5": quantized_eval.top5})
        save_checkpoint(checkpoint, qmodel, qmeta)
    else:
        train_set = open_dataset(data, split="train", train=job.augment, seed=job.config.seed, **opened)
        if job.train_images is not None and job.train_images < len(train_set):
            train_set = _spread(train_set, job.train_images)
        hooks = [QatHook(job.freeze_bn_at, job.freeze_observers_at), *job.hooks]
        trainer = Trainer(qmodel, job.config, train_set, val_set, hooks=hooks, out_dir=out, meta=qmeta)
        train_result = trainer.fit(resume=job.resume)
        checkpoint = out / "best"
        qmodel, _ = load_checkpoint(checkpoint)
        quantized_eval = evaluate(qmodel, val_set)
    return QuantizeJobResult(checkpoint, job.method, float_eval, quantized_eval, used, train_result)


class _Subset(torch.utils.data.Subset):
    """A subset that still tells the Trainer its classes and normalization."""

    def __init__(self, dataset, indices) -> None:
        super().__init__(dataset, indices)
        self.classes = getattr(dataset, "classes", None)
        self.normalization = getattr(dataset, "normalization", None)


def _spread(dataset, count: int) -> "_Subset":
    index = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
    return _Subset(dataset, index)


__all__ = ["METHODS", "QuantizeJob", "QuantizeJobResult", "default_qat_config", "run_quantize_job"]
