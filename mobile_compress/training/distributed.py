"""Multi-process training through PyTorch's own machinery (torchrun + DDP).

The same entry point runs alone or under ``torchrun --nproc_per_node N``:
``setup`` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK and starts the process
group (NCCL on CUDA, Gloo on CPU). A plain single-process run sees
``WORLD_SIZE`` unset (or 1) and none of this happens.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from mobile_compress.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, and whether it started the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when launched by torchrun with more than one process, else None."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or "RANK" not in os.environ:
        return None
    try:
        rank, world_size = int(os.environ["RANK"]), int(world)
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(f"bad torchrun environment: RANK={os.environ.get('RANK')!r} WORLD_SIZE={world!r}",
                        hint="launch with torchrun, or unset RANK/WORLD_SIZE for a single-process run") from None
    return (rank, world_size, local_rank) if world_size > 1 else None


def setup(device_type: str) -> DistContext:
    """Join (or start) the process group when running under torchrun; a no-op otherwise.

    ``device_type`` is 'cuda' or 'cpu' and picks NCCL or Gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", dist.get_rank())), owns_group=False)
    env = torchrun_env()
    if env is None:
        return DistContext()
    rank, world_size, local_rank = env
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed", hint="run without torchrun")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank, world_size, local_rank, owns_group=True)


def cleanup(ctx: DistContext) -> None:
    """Destroy the process group if ``setup`` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (which it syncs from rank 0), or the model itself."""
    if not ctx.enabled:
        return model
    ids = [device.index if device.index is not None else ctx.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over ranks, in place (identity when single-process)."""
    if ctx.enabled:
        dist.all_reduce(t)
    return t


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank if it is True on any; keeps decisions such as stopping in lockstep."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_parameters(params: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Copy rank 0's values into every rank (for trainable tensors outside the DDP module)."""
    if ctx.enabled:
        for p in params:
            dist.broadcast(p.data, src=0)


def average_gradients(params: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Average ``.grad`` over ranks for parameters DDP does not manage (hook extra parameters)."""
    params = list(params)
    if not ctx.enabled or not params:
        return
    # Which params have a gradient on any rank: those are averaged (a rank without one joins with zeros),
    # the rest keep grad None so the optimizer skips them, as in single-process training.
    present = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=params[0].device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    for p, has in zip(params, present.tolist()):
        if not has:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(ctx.world_size)


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Average float buffers (BatchNorm running statistics) over ranks; copy the rest from rank 0.

    After the last step of an epoch each rank's BN statistics saw only its own
    batches; syncing makes validation and the saved checkpoint use one set.
    """
    if not ctx.enabled:
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b.div_(ctx.world_size)
        else:
            dist.broadcast(b, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
