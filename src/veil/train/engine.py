"""Data parallelism for both trainers (torchrun: DDP for the classifier, averaged gradients for
the obfuscator pair)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..core import env


class Distributed:
    """torchrun-launched data parallelism (DDP); a no-op for a single process."""

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world_size = env.distributed()
        self.enabled = self.world_size > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        return nn.parallel.DistributedDataParallel(model)

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch."""
        return x[self.rank::self.world_size] if self.enabled else x

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t)
        return t

    def average_gradients(self, *modules: nn.Module) -> None:
        """Each gradient becomes its mean over the ranks (in one all-reduce): what DDP does,
        for networks trained together through one backward pass (the obfuscator pair)."""
        if not self.enabled:
            return
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for g, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(mean.view_as(g))

    def broadcast(self, *modules: nn.Module) -> None:
        """Rank 0's parameters and buffers (BatchNorm statistics) on every rank."""
        if not self.enabled:
            return
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
