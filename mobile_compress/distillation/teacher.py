"""The teacher: loaded from a checkpoint or given as a module, then frozen for good."""
from __future__ import annotations

import os

from torch import nn

from mobile_compress.training import CheckpointMeta, load_checkpoint


def freeze(teacher: nn.Module) -> nn.Module:
    """No gradients, eval mode (BatchNorm uses its running statistics, dropout is off)."""
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def load_teacher(source: str | os.PathLike | nn.Module) -> tuple[nn.Module, CheckpointMeta | None]:
    """A frozen teacher from a checkpoint directory (with its metadata) or from a user's module."""
    if isinstance(source, nn.Module):
        return freeze(source), None
    model, meta = load_checkpoint(source)
    return freeze(model), meta
