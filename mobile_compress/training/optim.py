"""Optimiser and learning-rate schedule.

Weight decay is applied only to weight matrices and conv kernels: decaying
BatchNorm scales/shifts and biases only fights the normalisation and costs
accuracy, so every 1-D parameter goes in a group without decay (standard
practice for MobileNet-style training).

The schedule is a per-step linear warm-up followed by cosine decay. It is a
pure function of the step number, so resuming only needs the step counter that
``LambdaLR.state_dict()`` already holds.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mobile_compress.training.config import DEFAULT_RULE, DefaultRule, TrainConfig


def split_decay(params: Iterable[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable params into (decay, no_decay): 1-D tensors (BN, biases, scalars) get no decay.

    Frozen params (requires_grad=False) are left out; a param listed twice is kept once.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in params:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW with two groups: with and without weight decay.

    The order of ``params`` must be the same on resume, so the saved optimizer state lines up.
    ``config.lr`` must be set: ``TrainConfig.resolve`` fills it by the default rule.
    """
    _require(config, "lr")
    decay, no_decay = split_decay(params)
    if not decay and not no_decay:
        raise ValueError("nothing to optimise: the model has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # TrainConfig.validate prevents this


def raise_bn_momentum(model: nn.Module, steps_per_epoch: int, rule: DefaultRule = DEFAULT_RULE) -> int:
    """Give BatchNorm layers at least ``rule.bn_momentum(steps_per_epoch)``; returns how many changed.

    Only short epochs need it. The momentum is a module attribute, not part of the weights, so
    checkpoints keep the architecture's own; the in-memory model keeps the raised one.
    """
    floor = rule.bn_momentum(steps_per_epoch)
    changed = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None and m.momentum < floor:
            m.momentum = floor
            changed += 1
    return changed


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Learning rate used for optimisation step ``step`` (0-based).

    Warm-up rises linearly from base_lr/warmup_steps at step 0 to base_lr at step
    warmup_steps-1 (never exactly 0, which would waste a step); then cosine from
    base_lr at step warmup_steps to min_lr at the last step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """Per-step warm-up + cosine over ``config.epochs * steps_per_epoch`` steps; call ``.step()`` after every batch."""
    _require(config, "lr", "warmup_epochs")
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    base, low = config.lr, config.min_lr

    def factor(step: int) -> float:
        return warmup_cosine_lr(step, total, warmup, base, low) / base

    return LambdaLR(optimizer, factor)


def _require(config: TrainConfig, *names: str) -> None:
    missing = [n for n in names if getattr(config, n) is None]
    if missing:
        raise ValueError(f"the config leaves {', '.join(missing)} to the default rule, which needs the training "
                         "set's size: build from config.resolve(train_images)")
