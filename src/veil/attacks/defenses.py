"""What an eavesdropper or attacker faces: an image transform whose 8-bit output is sent.

A `Defense` is either a trained obfuscator or a baseline (downsampling, blur, pixelation, noise,
a random-weight obfuscator). Its `transform` is the deterministic, differentiable part (what a
white-box attacker inverts); `noise` adds Gaussian noise before the 8-bit quantisation.
`transmit` is the black box: exactly what leaves the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.eightbit import quantize_8bit
from ..run_inputs import LoadedObfuscator


@dataclass
class Defense:
    name: str
    kind: str  # "obfuscator" or "baseline"
    transform: nn.Module  # the deterministic, differentiable part (what inversion inverts)
    description: str = ""
    noise: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    deobfuscator: nn.Module | None = None  # the co-trained one, for trained obfuscators
    seed: int = 0
    _generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.transform.eval().to(memory_format=torch.channels_last)
        for p in self.transform.parameters():
            p.requires_grad_(False)

    def to(self, device: torch.device) -> Defense:
        self.transform.to(device)
        if self.deobfuscator is not None:
            self.deobfuscator.to(device).eval()
        return self

    @torch.no_grad()
    def transmit(self, x: torch.Tensor) -> torch.Tensor:
        """The 8-bit image sent for x (N, 3, H, W) in [0, 1]; fresh noise on every call."""
        y = self.transform(x.contiguous(memory_format=torch.channels_last)).float()
        if self.noise:
            y = y + self.noise * torch.randn(y.shape, generator=self._noise_generator(),
                                             device="cpu").to(y.device)
        return quantize_8bit(y).contiguous()

    def transmit_all(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        return torch.cat([self.transmit(x[i:i + batch_size])
                          for i in range(0, len(x), batch_size)])

    def _noise_generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "noise_std": self.noise, **self.info}


def obfuscator_defense(name: str, obfuscator: nn.Module, deobfuscator: nn.Module | None = None,
                       info: dict[str, Any] | None = None) -> Defense:
    return Defense(name, "obfuscator", obfuscator, "trained obfuscator (8-bit output)",
                   info=dict(info or {}), deobfuscator=deobfuscator)


class Population(nn.Module):
    """Several obfuscators as one transform: each image goes through one member, drawn at random
    (seeded), as an attacker holding a population of siblings makes its training pairs."""

    def __init__(self, members: list[nn.Module], seed: int = 0) -> None:
        super().__init__()
        if not members:
            raise ValueError("a population needs at least one obfuscator")
        self.members = nn.ModuleList(members)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(len(self.members), (len(x),), generator=self.generator).to(x.device)
        parts = [(rows, member(x[rows])) for i, member in enumerate(self.members)
                 if len(rows := (pick == i).nonzero().flatten())]
        out = parts[0][1].new_empty((len(x), *parts[0][1].shape[1:]))
        for rows, y in parts:
            out[rows] = y
        return out


def held_defense(held: list[nn.Module], seed: int = 0) -> Defense:
    """The pairs an attacker holding these obfuscators can make: one's, or a population's."""
    if len(held) == 1:
        return obfuscator_defense("attacker's", held[0])
    return obfuscator_defense(f"attacker's {len(held)}", Population(held, seed))


RECORDED_INFO = ("path", "sha256", "lam", "recipe", "epochs", "train_subset")


def loaded_defense(o: LoadedObfuscator) -> Defense:
    """A loaded obfuscator checkpoint as a defense, recording where it came from."""
    info = o.info()
    return obfuscator_defense(o.label, o.obfuscator, o.deobfuscator,
                              {k: info[k] for k in RECORDED_INFO})
