"""The QAT schedule as a training hook: BatchNorm statistics freeze late, then the ranges.

Following Jacob et al. (2018) and TF's QAT recipe: BatchNorm keeps updating its
statistics for the first part of training (``freeze_bn_at``, a fraction of all
steps), after which every conv computes exactly the folded op TFLite runs; the
activation ranges follow a moving average until ``freeze_observers_at``, so the last
steps fine-tune the weights against the ranges the .tflite will carry. Both follow
from ``trainer.global_step``, so a resumed run is in the same phase. Other hooks
(e.g. distillation from a teacher) run beside this one in the same Trainer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mobile_compress.errors import UserError
from mobile_compress.quantization.fake_quant import set_observing
from mobile_compress.quantization.prepare import set_bn_frozen
from mobile_compress.training import Hook

if TYPE_CHECKING:  # pragma: no cover
    from mobile_compress.training import Trainer


class QatHook(Hook):
    """Freezes BatchNorm statistics after ``freeze_bn_at`` and observers after ``freeze_observers_at`` of training."""

    def __init__(self, freeze_bn_at: float = 0.5, freeze_observers_at: float = 0.75) -> None:
        for name, value in (("freeze_bn_at", freeze_bn_at), ("freeze_observers_at", freeze_observers_at)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{name} is {value}, expected a fraction of training in [0, 1]",
                                hint="e.g. 0.5 freezes half way through")
        self.freeze_bn_at = freeze_bn_at
        self.freeze_observers_at = freeze_observers_at
        self.bn_frozen = False
        self.observers_frozen = False

    def _apply(self, trainer: "Trainer") -> None:
        progress = trainer.global_step / max(trainer.total_steps, 1)
        self.bn_frozen = progress >= self.freeze_bn_at
        self.observers_frozen = progress >= self.freeze_observers_at
        set_bn_frozen(trainer.model, self.bn_frozen)
        set_observing(trainer.model, not self.observers_frozen)

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        self._apply(trainer)

    def on_step_end(self, trainer: "Trainer") -> None:
        self._apply(trainer)
