"""A batch loader over uint8 tensors resident on the training device.

Shuffling uses a seeded generator; augmentation (random crop with zero padding, horizontal flip)
is done for the whole batch at once on the tensor's device, with no per-image Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .dataset import Split


def to_tensor_images(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu"
                     ) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, 3, H, W) on device."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).contiguous().to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop of each image after zero-padding by `padding` pixels on every side."""
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


CUTOUT_FILL = 128  # mid grey: a hidden square looks like no content, not like a black object


def random_cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Hide one size x size square of each image (its centre anywhere in the image, clipped at
    the border) behind mid grey."""
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n,), generator=generator, device=x.device) - size // 2
    left = torch.randint(0, w, (n,), generator=generator, device=x.device) - size // 2
    rows = torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    hidden = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return x.masked_fill(hidden, CUTOUT_FILL)


class TensorLoader:
    """Iterates (images float in [0, 1], labels) batches from a Split held on `device`.

    `crop_padding`, `flip` and `cutout` (the side of a hidden square) turn on augmentation;
    `drop_last` drops a final short batch.
    The order and augmentation of epoch e depend only on (seed, e), so a resumed run continues
    exactly where it stopped.
    """

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool = False,
                 crop_padding: int = 0, flip: bool = False, cutout: int = 0,
                 drop_last: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 channels_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if cutout < 0:
            raise ValueError(f"cutout must be 0 (none) or a square's side, got {cutout}")
        if len(split) == 0:
            raise ValueError("cannot load an empty split")
        self.device = torch.device(device)
        self.images = to_tensor_images(split.images, self.device)
        self.labels = torch.as_tensor(split.labels).to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.crop_padding, self.flip = shuffle, crop_padding, flip
        self.cutout = cutout
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        hiding = torch.Generator(device=self.device)  # its own: crops and flips stay as without
        hiding.manual_seed(self.seed * 1_000_003 + self.epoch + 500_000)
        n = len(self.labels)
        order = (torch.randperm(n, generator=gen, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, gen)
            if self.flip:
                x = random_flip(x, gen)
            if self.cutout:
                x = random_cutout(x, self.cutout, hiding)
            x = x.float().div_(255)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
