"""Black-box attack: train a new decoder from the sent images back to the originals.

The attacker can query the frozen defense on any image (here: the training split, with
horizontal flips), and trains a decoder by MSE with Adam and a one-cycle learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split, TensorLoader
from ..eval.tables import channels_last
from ..train.engine import progress
from .budget import AttackBudget
from .decoders import make_decoder
from .defenses import Defense


def train_fresh_decoder(defense: Defense, decoder_name: str, train: Split, budget: AttackBudget,
                        device: torch.device, seed: int = 0, quiet: bool = True
                        ) -> tuple[nn.Module, list[float]]:
    """The trained decoder and its mean training loss per epoch."""
    train = train.subset(budget.train_size, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = make_decoder(decoder_name, budget.unet_width).to(device)
    decoder = decoder.to(memory_format=torch.channels_last)
    losses: list[float] = []
    if budget.epochs == 0:
        return decoder.eval(), losses
    loader = TensorLoader(train, budget.batch_size, shuffle=True, flip=True,
                          drop_last=len(train) >= 2 * budget.batch_size, seed=seed, device=device,
                          channels_last=True)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=budget.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, budget.lr, total_steps=budget.epochs * len(loader), pct_start=0.15)
    for epoch in range(1, budget.epochs + 1):
        loader.set_epoch(epoch)
        decoder.train()
        total = torch.zeros((), device=device)
        seen = 0
        desc = f"{defense.name}: {decoder_name} epoch {epoch}/{budget.epochs}"
        for x, _ in progress(loader, len(loader), desc, quiet):
            loss = F.mse_loss(decoder(channels_last(defense.transmit(x))), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(x)
            seen += len(x)
        losses.append(total.item() / seen)
    return decoder.eval(), losses


@torch.no_grad()
def reconstruct(decoder: nn.Module, sent: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    decoder.eval()
    return torch.cat([decoder(channels_last(sent[i:i + batch_size])).float().clamp(0, 1)
                      .contiguous() for i in range(0, len(sent), batch_size)])
