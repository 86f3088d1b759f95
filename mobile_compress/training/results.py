"""What a training run reports: each epoch's numbers and the outcome of ``Trainer.fit``.

``history.jsonl`` and ``train_state.pt`` store ``EpochStats.to_dict()``; ``from_dict``
ignores keys it does not know, so newer histories still load.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping


@dataclass
class EpochStats:
    """Numbers of one epoch (``epoch`` counts from 0). Accuracies in percent.

    ``val_*`` are None on epochs without validation. ``lr`` is the rate of the
    epoch's last step; ``images_per_sec`` counts training images over all ranks.
    """

    epoch: int
    train_loss: float
    train_top1: float
    val_top1: float | None
    val_top5: float | None
    lr: float
    seconds: float
    images_per_sec: float
    val_loss: float | None = None
    val_n: int = 0
    train_n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpochStats":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    """The outcome of ``fit``: every epoch's stats (including those before a resume)."""

    epochs: list[EpochStats]
    best_val_top1: float | None
    stopped_early: bool
    elapsed: float  # seconds of training, summed over resumed runs
    best_epoch: int | None = None
    out_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
