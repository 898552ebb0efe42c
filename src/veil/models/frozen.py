"""A classifier that never learns again but still passes gradients to its input."""

from __future__ import annotations

import torch
from torch import nn


class FrozenClassifier(nn.Module):
    """Wraps a trained classifier: eval mode forever, no gradient into its weights.

    Gradients still flow to the input, since the obfuscator is trained through it.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = freeze(classifier)

    def train(self, mode: bool = True) -> FrozenClassifier:
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
