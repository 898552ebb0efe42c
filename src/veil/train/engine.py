"""Shared pieces of the training loops: distributed setup and accuracy."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from ..core import env
from ..core.runtime import autocast


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

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, device_type: str = "cpu",
             precision: str = "fp32", transform=None) -> float:
    """Top-1 accuracy of model over loader; `transform` is applied to images first."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        with autocast(torch.device(device_type), precision):
            if transform is not None:
                x = transform(x)
            logits = model(x)
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
