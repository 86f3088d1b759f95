"""The extension points of the training engine.

Compression stages (quantisation-aware training, pruning fine-tune, knowledge
distillation) plug into ``Trainer`` by subclassing ``Hook`` and overriding only
what they need, so the engine never changes for them. The order of calls in one
``fit`` is::

    on_fit_start(trainer)                 model on its device; optimizer not built yet
    load_state_dict(state)                only when resuming (the model's weights are restored just before)
    extra_parameters()                    collected once, added to the optimizer
                                          (then the model is wrapped in DDP under torchrun)
    for each epoch:
        on_epoch_start(trainer, epoch)    after model.train(): may freeze BN / observers
        for each batch:
            loss = hook.loss(trainer, inputs, targets, outputs, loss)   chained, hook by hook
            on_after_backward(trainer)    gradients ready, before optimizer.step()
            on_step_end(trainer)          after optimizer.step() and the lr step
        on_epoch_end(trainer, epoch, stats)  after validation, before the epoch's state is saved
    on_fit_end(trainer, result)

Useful trainer attributes: ``model`` (the bare module), ``module`` (what the
batch goes through: the DDP wrapper under torchrun), ``optimizer``,
``scheduler``, ``config``, ``device``, ``epoch``, ``global_step``,
``steps_per_epoch``, ``total_steps``, ``rank``, ``world_size``, ``is_main``,
``out_dir``, ``resumed``, ``history``; a hook may set ``trainer.should_stop =
True`` to end training after the current epoch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from mobile_compress.training.engine import EpochStats, Trainer, TrainResult


class Hook:
    """Base class with no-op methods; override the ones a stage needs."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Set up before the optimizer exists: move own modules (teacher, adapters) to
        ``trainer.device``, attach forward hooks, prepare the model (QAT fusing/observers),
        compute initial pruning masks (check ``trainer.resumed`` first: on resume they come
        back through ``load_state_dict``)."""

    def extra_parameters(self) -> Iterable[nn.Parameter]:
        """Trainable parameters outside the model (e.g. distillation 1x1 adapters) that the
        optimizer must update. Called once, after ``on_fit_start``; under DDP their gradients
        are averaged across ranks by the engine. Save their values in ``state_dict``."""
        return ()

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Called after ``model.train()``, so a hook may put submodules in eval mode for this
        epoch (QAT: freeze BN statistics late in training) or disable observers."""

    def loss(self, trainer: "Trainer", inputs: torch.Tensor, targets: torch.Tensor,
             outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to optimise. ``loss`` is what the previous hook returned (the
        cross-entropy for the first hook); distillation replaces or extends it from the batch
        inputs (teacher forward) and the student ``outputs``."""
        return loss

    def on_after_backward(self, trainer: "Trainer") -> None:
        """Gradients are ready and not yet applied: clip them, or zero those of pruned weights."""

    def on_step_end(self, trainer: "Trainer") -> None:
        """After ``optimizer.step()`` and the lr step: re-apply pruning masks, update EMAs."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, stats: "EpochStats") -> None:
        """After training and validation of the epoch, before its checkpoint and train
        state are written, so anything changed here is saved with the epoch."""

    def on_fit_end(self, trainer: "Trainer", result: "TrainResult") -> None:
        """Training is over (finished or stopped early); ``result`` holds the history."""

    def state_dict(self) -> dict[str, Any]:
        """State to resume with (masks, adapter weights, counters). It is saved in
        train_state.pt and read with ``torch.load(weights_only=True)``, so use tensors and
        plain containers of numbers/strings only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; called after ``on_fit_start`` when resuming,
        before ``extra_parameters`` is collected."""
