"""Black-box attack: train a new decoder from the sent images back to the originals.

The attacker can query the frozen defense on any image (here: the training split, with
horizontal flips), and trains a decoder by MSE with Adam and a one-cycle learning rate.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import channels_last
from ..core.runtime import progress
from ..data import Split, TensorLoader
from ..metrics import psnr, ssim
from ..report.kinds.attacks import CURVE_SCHEMA
from .budget import AttackBudget
from .decoders import make_decoder
from .defenses import Defense


def decoder_step(decoder: nn.Module, defense: Defense, optimizer: torch.optim.Optimizer,
                 x: torch.Tensor, ssim_weight: float = 0.0) -> torch.Tensor:
    """One attacker step: query the defense on x, one step of the decoder back to x (MSE, plus
    `ssim_weight` x (1 - SSIM) when given); returns the detached loss."""
    decoder.train()
    rebuilt = decoder(channels_last(defense.transmit(x)))
    loss = F.mse_loss(rebuilt, x)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1 - ssim(rebuilt.float().contiguous(), x).mean())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


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
        total = torch.zeros((), device=device)
        seen = 0
        desc = f"{defense.name}: {decoder_name} epoch {epoch}/{budget.epochs}"
        for x, _ in progress(loader, len(loader), desc, quiet):
            loss = decoder_step(decoder, defense, optimizer, x)
            scheduler.step()
            total += loss * len(x)
            seen += len(x)
        losses.append(total.item() / seen)
    return decoder.eval(), losses


@torch.no_grad()
def reconstruct(decoder: nn.Module, sent: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    decoder.eval()
    return torch.cat([decoder(channels_last(sent[i:i + batch_size])).float().clamp(0, 1)
                      .contiguous() for i in range(0, len(sent), batch_size)])


def train_until_flat(defense: Defense, decoder: nn.Module, train: Split, val: Split,
                     device: torch.device, *, time_budget_s: float | None,
                     max_images: int | None = None, eval_every: int = 5000,
                     batch_size: int = 64, lr: float = 2e-3, ssim_weight: float = 0.0,
                     flat_gain: float = 0.005, seed: int = 0, quiet: bool = True
                     ) -> tuple[nn.Module, dict[str, Any]]:
    """Train `decoder` from sent images back to the originals until its learning curve is flat.

    Adam at a constant learning rate (no schedule: the length is not known in advance); every
    `eval_every` training images the decoder is scored on the held-out `val` images. It stops when
    the SSIM gained over the last quarter of the images seen is below `flat_gain` ("converged"),
    or when `time_budget_s` of training has passed or it has seen `max_images` ("budget"). The
    loss is MSE, plus
    `ssim_weight` x (1 - SSIM) when given. Returns the decoder (eval mode) and the curve.
    """
    val_x = next(iter(TensorLoader(val, len(val), device=device)))[0]
    val_sent = defense.transmit_all(val_x)
    loader = TensorLoader(train, batch_size, shuffle=True, flip=True, seed=seed, device=device,
                          drop_last=len(train) >= 2 * batch_size, channels_last=True)
    decoder = decoder.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    points: list[dict[str, float]] = []
    seen, train_s, epoch, stop = 0, 0.0, 0, None
    while stop is None:
        epoch += 1
        loader.set_epoch(epoch)
        for x, _ in progress(loader, len(loader), f"{defense.name}: attacker epoch {epoch}", quiet):
            t0 = time.perf_counter()
            decoder_step(decoder, defense, optimizer, x, ssim_weight)
            train_s += time.perf_counter() - t0
            seen += len(x)
            spent = ((max_images is not None and seen >= max_images)
                     or (time_budget_s is not None and train_s >= time_budget_s))
            if spent or seen // eval_every > (seen - len(x)) // eval_every:
                points.append(_score(decoder, val_sent, val_x, seen, train_s))
                stop = stop_reason(points, seen, train_s, time_budget_s, flat_gain)
                if stop is None and spent:
                    stop = "budget"
                if stop is not None:
                    break
    return decoder.eval(), {"stopped": stop, "points": points, "images": seen,
                            "train_s": round(train_s, 1), "ssim_weight": ssim_weight,
                            "flat_gain": flat_gain, "time_budget_s": time_budget_s,
                            "max_images": max_images}




def attacker_curves(defenses: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The learning curves of each defense's attackers (as `train_until_flat` returns them, with
    "decoder" and "loss"), as written beside the results (`attacker_curves.json`): per attacker
    why it stopped and the validation SSIM / PSNR against the training images it had seen."""
    return {"schema": CURVE_SCHEMA, "defenses": [
        {"defense": name, "attackers": [
            {"decoder": a["decoder"], "loss": a["loss"], "stopped": a["stopped"],
             "flat_gain": a["flat_gain"], "images": a["images"], "train_s": a["train_s"],
             "points": [{k: p[k] for k in ("images", "train_s", "ssim", "psnr")}
                        for p in a["points"]]} for a in attackers]}
        for name, attackers in defenses.items()]}


def _score(decoder: nn.Module, sent: torch.Tensor, original: torch.Tensor, seen: int,
           train_s: float) -> dict[str, float]:
    rebuilt = reconstruct(decoder, sent)
    return {"images": seen, "train_s": round(train_s, 1), "ssim": ssim(rebuilt, original)
            .mean().item(), "psnr": psnr(rebuilt, original).mean().item()}


def stop_reason(points: list[dict[str, float]], seen: int, train_s: float,
                budget_s: float | None, flat_gain: float) -> str | None:
    """'converged' when the validation SSIM gained less than `flat_gain` over the last quarter
    of the images seen (with at least four points), 'budget' when the training time is spent,
    else None (keep training)."""
    if len(points) >= 4:
        quarter_ago = [p for p in points if p["images"] <= 0.75 * seen][-1]
        if points[-1]["ssim"] - quarter_ago["ssim"] < flat_gain:
            return "converged"
    return "budget" if budget_s is not None and train_s >= budget_s else None
