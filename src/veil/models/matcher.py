"""A contrastive matcher: which photo does this sent image come from?

Two encoders, one for sent images and one for photos, map both to unit-length embeddings; a
symmetric InfoNCE loss pulls each sent image towards its own photo and away from the batch's
others. `veil.attacks.linkage` trains one after the obfuscator is frozen (the attack); the
obfuscator trainer can train one in the same steps as the obfuscator (the co-trained linkage
adversary, `lam_link`), as the deobfuscator is for reconstruction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EMBEDDING = 128


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class LinkEncoder(nn.Sequential):
    """A VGG-style CNN to a unit-length embedding (about 0.5M parameters at width 32)."""

    def __init__(self, width: int = 32, dim: int = EMBEDDING) -> None:
        w = width
        super().__init__(*_conv(3, w), *_conv(w, w), nn.MaxPool2d(2),
                         *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
                         *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d(2),
                         *_conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4 * w, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=1)


class Matcher(nn.Module):
    """Two encoders, one for sent images and one for photos, and a learned temperature; both
    encoders start from the same (seeded) weights."""

    def __init__(self, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.sent = LinkEncoder(width)
        self.photo = LinkEncoder(width)
        self.photo.load_state_dict(self.sent.state_dict())
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def loss(self, sent: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE: each sent image against every photo of the batch, and back."""
        logits = self.log_scale.clamp(max=math.log(100)).exp() * self.sent(sent) @ \
            self.photo(photos).T
        target = torch.arange(len(sent), device=sent.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    @torch.no_grad()
    def similarity(self, sent: torch.Tensor, photos: torch.Tensor, batch_size: int = 500
                   ) -> torch.Tensor:
        """Cosine similarity of every sent image (rows) with every photo (columns)."""
        self.eval()
        q = torch.cat([self.sent(_channels_last(sent[i:i + batch_size]))
                       for i in range(0, len(sent), batch_size)])
        g = torch.cat([self.photo(_channels_last(photos[i:i + batch_size]))
                       for i in range(0, len(photos), batch_size)])
        return (q @ g.T).float()
