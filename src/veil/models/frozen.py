"""A classifier that never learns again but still passes gradients to its input."""

from __future__ import annotations

import torch
from torch import nn

from .fold import fold_batchnorm


class FrozenClassifier(nn.Module):
    """Wraps a trained classifier: eval mode forever, no gradient into its weights.

    Gradients still flow to the input, since the obfuscator is trained through it. With `fold`
    (the default) it runs a copy with its BatchNorms folded into the convolutions: the same
    function, without the BatchNorm passes; the wrapped model itself is left as it was.
    `forward_with_features` also returns the penultimate features (the input of the last linear
    layer), the dense target of feature distillation.
    """

    def __init__(self, classifier: nn.Module, fold: bool = True) -> None:
        super().__init__()
        freeze(classifier)
        self.classifier = freeze(fold_batchnorm(classifier)) if fold else classifier
        self.head = _last_linear(self.classifier)
        self._captured: torch.Tensor | None = None

    def train(self, mode: bool = True) -> FrozenClassifier:
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penultimate features) of the images x."""
        if self.head is None:
            raise ValueError("feature distillation needs a classifier that ends in nn.Linear; "
                             f"{type(self.classifier).__name__} has none")
        handle = self.head.register_forward_pre_hook(self._capture)
        try:
            logits = self.classifier(x)
        finally:
            handle.remove()
        features, self._captured = self._captured, None
        return logits, features

    def _capture(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._captured = inputs[0]


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _last_linear(model: nn.Module) -> nn.Linear | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None
