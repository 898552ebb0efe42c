"""Parameters and multiply-accumulates of veil's networks, and the obfuscator's overhead.

MACs are counted with `torch.utils.flop_counter.FlopCounterMode` for one 3x32x32 image, or one
of the size asked for (MACs = FLOPs / 2); it counts convolutions and matrix products, not
BatchNorm, activations, pooling or upsampling. The overhead of the obfuscator over a classifier
is obfuscator / classifier in percent, as in the paper's Table 1.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import PAPER_CLASSIFIERS, create_model, list_models, model_kind

INPUT_SHAPE = (3, 32, 32)
OBFUSCATOR = "obfuscator"
# The paper's Table 1: obfuscator overhead in % of the classifier's (FLOPs, parameters).
PAPER_OVERHEAD: dict[str, tuple[float, float]] = {
    "vgg19": (6.7, 1.6),
    "resnet18": (4.8, 2.9),
    "resnet50": (2.1, 1.4),
    "googlenet": (1.7, 5.3),
}
PAPER_OBFUSCATOR_PARAMS = 324_518
PAPER_OBFUSCATOR_MACS = 2.6e7
SCHEMA = "veil.models/1"
COUNTING_NOTE = ("per 3x{size}x{size} image; MACs = FLOPs / 2 from torch.utils.flop_counter."
                 "FlopCounterMode (convolutions and matrix products only)")


@dataclass(frozen=True)
class Complexity:
    name: str
    kind: str
    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass on a single image, in eval mode."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@functools.cache
def model_complexity(name: str, image_size: int = 32) -> Complexity:
    """Complexity of a registry model on image_size x image_size images; it is built on the
    meta device, so nothing is allocated. A model that refuses the size is a ValueError."""
    with torch.device("meta"):
        model = create_model(name)
    try:
        macs = count_macs(model, (3, image_size, image_size))
    except RuntimeError as err:  # shapes that do not fit the model's layers
        raise ValueError(f"{name} does not take {image_size}x{image_size} images: "
                         f"{str(err).splitlines()[0]}") from err
    return Complexity(name, model_kind(name), count_params(model), macs)


def overhead_rows(obfuscator: Complexity, classifiers: list[Complexity]) -> list[dict[str, Any]]:
    """The obfuscator's overhead over each classifier, with the paper's value where it has one."""
    rows = []
    for c in classifiers:
        row: dict[str, Any] = {
            "classifier": c.name,
            "params": c.params,
            "macs": c.macs,
            "flops_overhead_pct": round(100 * obfuscator.macs / c.macs, 2),
            "params_overhead_pct": round(100 * obfuscator.params / c.params, 2),
        }
        if c.name in PAPER_OVERHEAD:
            paper_flops, paper_params = PAPER_OVERHEAD[c.name]
            row.update(
                paper_flops_overhead_pct=paper_flops,
                paper_params_overhead_pct=paper_params,
                flops_diff_pp=round(row["flops_overhead_pct"] - paper_flops, 2),
                params_diff_pp=round(row["params_overhead_pct"] - paper_params, 2),
            )
        rows.append(row)
    return rows


def models_report(names: list[str] | None = None, image_size: int = 32) -> dict[str, Any]:
    """Every registry model's size plus the obfuscator overhead over the paper's classifiers,
    on image_size x image_size images (the paper's figures are for 32x32)."""
    if image_size < 8 or image_size % 8:
        raise ValueError(f"--image-size must be a multiple of 8 (the obfuscator halves the "
                         f"resolution three times), got {image_size}")
    # obfuscators first, then classifiers, each by name
    names = sorted(names or list_models(), key=lambda n: (model_kind(n) != "obfuscator", n))
    models, refused = [], {}
    for n in names:
        try:
            models.append(model_complexity(n, image_size))
        except ValueError as err:  # e.g. a classifier head sized for 32x32
            refused[n] = str(err)
    obf = model_complexity(OBFUSCATOR, image_size)
    return {
        "schema": SCHEMA,
        "input_shape": [3, image_size, image_size],
        "counting": COUNTING_NOTE.format(size=image_size),
        "models": [asdict(m) for m in models],
        "obfuscator": {"params": obf.params, "macs": obf.macs,
                       "paper_params": PAPER_OBFUSCATOR_PARAMS,
                       "paper_macs": PAPER_OBFUSCATOR_MACS},
        "overhead": overhead_rows(obf, [m for n in PAPER_CLASSIFIERS for m in models
                                        if m.name == n]),
        "refused": refused,
    }
