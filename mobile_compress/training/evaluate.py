"""Top-1 / top-5 accuracy and loss of a classifier on a dataset.

Used by the trainer for validation and on its own for saved checkpoints.
Accuracies are percentages (0-100). Under torchrun, ``distributed=True`` lets
each rank score a disjoint slice of the dataset (no padding, so nothing is
counted twice) and sums the counts over ranks: every rank gets the numbers for
the whole dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mobile_compress.errors import UserError
from mobile_compress.training.config import resolve_device


@dataclass
class EvalResult:
    """Accuracy in percent; ``top5`` is None when the model has fewer than 5 classes.

    ``topk`` holds every requested k (that the class count allows), e.g. {1: .., 5: ..}.
    """

    top1: float
    top5: float | None
    loss: float
    n: int
    topk: dict[int, float] = field(default_factory=dict)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        else:
            return model


def topk_correct(outputs: torch.Tensor, targets: torch.Tensor, ks: Iterable[int]) -> list[torch.Tensor]:
    """Number of samples whose target is among the k highest logits, for each k (as tensors, no sync)."""
    ks = list(ks)
    kmax = min(max(ks), outputs.shape[1])
    top = outputs.topk(kmax, dim=1).indices
    hits = top.eq(targets.view(-1, 1))
    return [hits[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    topk: Iterable[int] = (1, 5),
    num_workers: int = 0,
    distributed: bool = False,
) -> EvalResult:
    """Score ``model`` on ``data`` (a Dataset of (image, label) or a DataLoader) in eval mode.

    ``device`` None runs where the model's parameters are; otherwise the model is
    moved there ('auto', 'cpu', 'cuda' or a torch.device). The model's
    train/eval mode is restored afterwards. ``loss`` is the plain
    cross-entropy (no label smoothing) averaged over samples.
    """
    topk = tuple(topk)
    model = unwrap(model)
    if device is None:
        first = next(iter(model.parameters()), None)
        dev = first.device if first is not None else torch.device("cpu")
    else:
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        model.to(dev)
    dist_on = distributed and torch.distributed.is_available() and torch.distributed.is_initialized()
    if isinstance(data, DataLoader):
        if dist_on and torch.distributed.get_world_size() > 1:
            raise ValueError("evaluate(distributed=True) needs a Dataset, not a DataLoader, to split it across ranks")
        loader = data
    else:
        if dist_on:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            data = Subset(data, range(rank, len(data), world))
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(0))

    ks = sorted(set(int(k) for k in topk) | {1, 5})
    if ks[0] < 1:
        raise ValueError(f"evaluate: topk values must be >= 1, got {tuple(topk)}")
    # [loss sum, samples, hits for each k]; the class count is max-reduced separately
    sums = torch.zeros(2 + len(ks), dtype=torch.float64, device=dev)
    num_classes = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for inputs, targets in loader:
                inputs = inputs.to(dev, non_blocking=True)
                targets = torch.as_tensor(targets).to(dev, non_blocking=True)
                outputs = model(inputs)
                num_classes = outputs.shape[1]
                sums[0] += F.cross_entropy(outputs.float(), targets, reduction="sum").double()
                sums[1] += targets.numel()
                for i, hits in enumerate(topk_correct(outputs, targets, ks)):
                    sums[2 + i] += hits
    finally:
        model.train(was_training)

    classes = torch.tensor([float(num_classes)], dtype=torch.float64, device=dev)
    if dist_on:
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(classes, op=torch.distributed.ReduceOp.MAX)
    values = sums.tolist()
    n = int(round(values[1]))
    if n == 0:
        raise UserError("the evaluation dataset is empty", hint="check the data path and split")
    num_classes = int(classes.item())
    acc = {k: 100.0 * values[2 + i] / n for i, k in enumerate(ks) if k <= num_classes}
    requested = set(int(k) for k in topk)
    return EvalResult(
        top1=acc[1],
        top5=acc.get(5),
        loss=values[0] / n,
        n=n,
        topk={k: v for k, v in acc.items() if k in requested},
    )
