"""Evaluate a saved checkpoint on a dataset, with the checkpoint's own preprocessing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobile_compress.data import Normalization, open_dataset
from mobile_compress.errors import UserError
from mobile_compress.training import CheckpointMeta, EvalResult, evaluate, load_checkpoint


@dataclass
class EvalJob:
    """An evaluation as the user names it: a checkpoint, a data source and its split."""

    checkpoint: str | Path
    data: str
    split: str = "test"
    batch_size: int = 256
    cache_dir: str | None = None
    storage_size: int | None = None


@dataclass
class EvalJobResult:
    checkpoint: str
    data: str
    split: str
    result: EvalResult
    meta: CheckpointMeta


def run_eval_job(job: EvalJob) -> EvalJobResult:
    checkpoint, data = job.checkpoint, job.data
    model, meta = load_checkpoint(checkpoint)
    dataset = open_dataset(data, split=job.split, image_size=meta.input_size, train=False,
                           normalization=Normalization.from_dict(meta.normalization), cache_dir=job.cache_dir,
                           storage_size=job.storage_size)
    if list(dataset.classes) != list(meta.labels):
        raise UserError(
            f"the classes of {data} ({len(dataset.classes)}: {', '.join(dataset.classes[:5])}...) differ from "
            f"those {checkpoint} was trained on ({len(meta.labels)}: {', '.join(meta.labels[:5])}...)",
            hint="evaluate on data with the same class folders as the training data",
        )
    result = evaluate(model, dataset, batch_size=job.batch_size)
    return EvalJobResult(str(checkpoint), data, job.split, result, meta)
