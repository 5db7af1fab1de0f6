"""DDP helpers: the process group torchrun describes, the wrapped model, ranks agreeing on a stop, and the
dictionaries' usage merged and their restarts broadcast from rank 0, so that every rank keeps the same entries."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world, owns_group). Under torchrun (WORLD_SIZE > 1) joins the process group, making it when none exists
    yet; owns_group says this call made it, so finish_distributed ends it."""
    made_here = not dist.is_initialized()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        return 0, 1, False
    return dist.get_rank(), dist.get_world_size(), made_here


def wrap_ddp(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """The model itself on one process, else DistributedDataParallel around it (buffers are not broadcast per step)."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
    )


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (a collective: every rank must call it at the same step)."""
    tensor = torch.tensor(float(flag), device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor)


def merge_usage(dicts) -> None:
    """Each entry's last use over all ranks, so that rank 0 sees which entries are dead everywhere."""
    dist.all_reduce(dicts.last_used, op=dist.ReduceOp.MAX)
    if dicts.last_used_deg is not None:
        dist.all_reduce(dicts.last_used_deg, op=dist.ReduceOp.MAX)


def broadcast_dictionaries(dicts) -> None:
    """Rank 0's entries and usage bookkeeping to every rank (after rank 0 restarted dead entries)."""
    for tensor in (dicts.d_lr, dicts.d_hr, dicts.d_deg, dicts.last_used, dicts.last_used_deg, dicts.born,
                   dicts.ema_count, dicts.ema_sum):
        if tensor is not None:
            dist.broadcast(tensor.data, src=0)


def finish_distributed(owns_group: bool) -> None:
    """Wait for every rank; end the process group when this call made it (left alive, its threads can abort the
    process at exit: "terminate called ...")."""
    if dist.is_initialized():
        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
