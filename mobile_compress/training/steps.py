"""One epoch's optimisation steps and the loader that feeds them.

Every batch: forward (bf16 autocast if asked), the loss chained through the hooks'
``loss``, backward, the hooks' ``on_after_backward``, the optimizer and lr steps, the
hooks' ``on_step_end``. The loader's order and worker seeds come from the trainer's
generator, which ``seeding.seed_epoch`` sets per (seed, epoch, rank).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mobile_compress.training import distributed
from mobile_compress.training.config import TrainConfig
from mobile_compress.training.progress import StepBar
from mobile_compress.training.seeding import seed_worker

if TYPE_CHECKING:  # pragma: no cover
    from mobile_compress.training.engine import Trainer


def train_loader(data: Dataset, cfg: TrainConfig, dist: distributed.DistContext, device: torch.device,
                 generator: torch.Generator) -> DataLoader:
    """Shuffled batches of this rank's share (a DistributedSampler under torchrun)."""
    sampler = None
    per_rank = len(data)  # type: ignore[arg-type]
    if dist.enabled:
        sampler = DistributedSampler(data, num_replicas=dist.world_size, rank=dist.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=False)
        per_rank = len(sampler)
    # A last batch of one sample breaks BatchNorm in training mode: drop it.
    drop_last = per_rank > 1 and per_rank % cfg.batch_size == 1
    return DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
    )


@dataclass
class StepTotals:
    """What one epoch's steps leave: (loss * n, correct, n) summed on this rank, the last step's lr, and the shape
    of one input sample and the number of outputs (to describe the model when no meta was given)."""

    sums: torch.Tensor
    lr: float
    sample_shape: tuple[int, ...] | None = None
    num_outputs: int | None = None


def train_steps(trainer: "Trainer", epoch: int, loader: DataLoader) -> StepTotals:
    """All optimisation steps of one epoch; sets ``trainer.step`` and ``trainer.global_step`` as it goes."""
    cfg = trainer.config
    assert trainer.optimizer is not None and trainer.scheduler is not None
    sums = torch.zeros(3, dtype=torch.float64, device=trainer.device)
    totals = StepTotals(sums, trainer.optimizer.param_groups[0]["lr"])
    bar = StepBar(len(loader), epoch, cfg.epochs, cfg.progress, trainer.is_main, trainer.world_size)
    try:
        for step, batch in enumerate(loader):
            trainer.step = step
            inputs = batch[0].to(trainer.device, non_blocking=True)
            targets = torch.as_tensor(batch[1]).to(trainer.device, non_blocking=True)
            totals.lr = trainer.optimizer.param_groups[0]["lr"]
            trainer.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                outputs = trainer.module(inputs)
                loss = trainer.criterion(outputs, targets)
                for h in trainer.hooks:
                    loss = h.loss(trainer, inputs, targets, outputs, loss)
                    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                        raise TypeError(f"{type(h).__name__}.loss must return a scalar tensor, got {loss!r:.80}")
            loss.backward()
            distributed.average_gradients(trainer.extra_params, trainer.dist)
            for h in trainer.hooks:
                h.on_after_backward(trainer)
            trainer.optimizer.step()
            trainer.scheduler.step()
            trainer.global_step += 1
            for h in trainer.hooks:
                h.on_step_end(trainer)

            with torch.no_grad():
                k = targets.shape[0]
                sums[0] += loss.detach().double() * k
                sums[1] += (outputs.argmax(dim=1) == targets).sum()
                sums[2] += k
            if totals.sample_shape is None:
                totals.sample_shape, totals.num_outputs = tuple(inputs.shape[1:]), int(outputs.shape[1])
            bar.update(step, sums, totals.lr)
    finally:
        bar.close()
    return totals
