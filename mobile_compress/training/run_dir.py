"""The checkpoints and history a run leaves in its ``out_dir`` after every epoch.

``last/`` is the latest finished epoch; ``best/`` the best validation top-1 (the latest
epoch without validation data; the first epoch's until a validated epoch exists);
``history.jsonl`` one ``EpochStats`` per line. ``train_state.pt`` (``train_state.py``)
is written after them: it is the commit point a resume starts from.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn
from torch.utils.data import Dataset

from mobile_compress.report.atomic import write_text
from mobile_compress.training.checkpoint import CheckpointMeta, checkpoint_exists, save_checkpoint
from mobile_compress.training.results import EpochStats
from mobile_compress.training.train_state import STATE_FILE

HISTORY_FILE = "history.jsonl"


@dataclass
class ModelFacts:
    """What the run learns about the model and its data, for checkpoints whose caller gave no meta (or one
    without labels or normalization): the dataset's classes and normalization, one sample's shape, the outputs."""

    labels: list[str] = field(default_factory=list)
    normalization: dict[str, Any] | None = None
    sample_shape: tuple[int, ...] | None = None
    num_outputs: int | None = None


def read_data_facts(data: Dataset, facts: ModelFacts, meta: CheckpointMeta | None) -> CheckpointMeta | None:
    """Note the dataset's classes and normalization in ``facts``; fill them into ``meta`` where it has none."""
    labels = [str(c) for c in getattr(data, "classes", None) or []]
    norm = getattr(data, "normalization", None)
    norm = norm.to_dict() if norm is not None and hasattr(norm, "to_dict") else norm
    if meta is not None:
        if not meta.labels and labels and len(labels) == meta.num_classes:
            meta = replace(meta, labels=labels)
        if meta.normalization is None and isinstance(norm, dict):
            meta = replace(meta, normalization=norm)
    facts.labels, facts.normalization = labels, norm if isinstance(norm, dict) else None
    return meta


def epoch_meta(meta: CheckpointMeta | None, model: nn.Module, facts: ModelFacts, stats: EpochStats,
               best_val_top1: float | None) -> CheckpointMeta:
    """The meta of the epoch's checkpoints: ``meta`` (or the best description of the model without one) with the
    epoch's numbers as metrics."""
    if meta is None:  # describe the model as well as we can; load_checkpoint needs a zoo arch
        shape = facts.sample_shape or ()
        size: int | tuple[int, int] = 0
        if len(shape) >= 2:
            size = shape[-1] if shape[-1] == shape[-2] else (shape[-2], shape[-1])
        n = facts.num_outputs or len(facts.labels) or 1
        meta = CheckpointMeta(arch=type(model).__name__, num_classes=n, input_size=size or 1,
                              labels=facts.labels if len(facts.labels) == n else [],
                              normalization=facts.normalization)
    metrics = {k: v for k, v in stats.to_dict().items() if k not in ("seconds", "images_per_sec")}
    metrics["best_val_top1"] = best_val_top1
    return replace(meta, metrics={**meta.metrics, **metrics})


def save_epoch_files(out: Path, model: nn.Module, meta: CheckpointMeta, history: Sequence[EpochStats],
                     best: bool) -> None:
    """``last/``, ``best/`` (when ``best``, or while it does not exist) and ``history.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "last", model, meta)
    if best or not checkpoint_exists(out / "best"):  # best/ always exists after the first epoch
        save_checkpoint(out / "best", model, meta)
    write_text(out / HISTORY_FILE, "".join(json.dumps(s.to_dict()) + "\n" for s in history))


def clear_previous_run(out: Path, log: Callable[[str], None]) -> None:
    """A fresh run must not leave files of an older run that a later resume would mix in."""
    stale = [out / STATE_FILE, out / HISTORY_FILE]
    if any(p.exists() for p in stale):
        log(f"note: starting a fresh run in {out}; the previous run's files there are replaced")
    for p in stale:
        p.unlink(missing_ok=True)
    for d in (out / "best", out / "last"):
        if checkpoint_exists(d):  # also ends a save of the old run that a kill interrupted
            shutil.rmtree(d, ignore_errors=True)
