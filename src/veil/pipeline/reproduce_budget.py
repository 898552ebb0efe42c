"""Time budgets for `veil reproduce`: split a total budget over phases, measure training speed
with a few warm-up steps, and choose epoch counts that fit before a run starts.

The one-cycle schedules are sized for the final epoch count, so the count is fixed up front: a
phase times a few steps of exactly what it will run (same model, batch, precision, memory
format), estimates the time of one epoch (training, the per-epoch evaluation, the checkpoint)
and takes as many epochs as fit into its share, at most the default and at least one. Shares are
re-split before every phase from the time that is actually left, so a phase that overran is paid
for by the phases after it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from ..attacks.defenses import obfuscator_defense
from ..attacks.fresh_decoder import decoder_step as attacker_step
from ..core.runtime import autocast
from ..models import create_model
from ..train.classifier import classifier_step as classifier_training_step
from ..train.classifier import make_config as make_classifier_config
from ..train.classifier import make_optimizer
from ..train.obfuscator import AdversarialStep, ObfuscatorConfig

SAFETY = 0.9  # plan to use this fraction of a phase's share
# bf16 training speeds on one H100 (images/s), rounded down from results/gpu/throughput.md (batch
# 512, synthetic data; real runs spread by about 25 %). They only weigh the phases against each
# other before anything is measured: the measured speed decides the epochs.
GUESSED_IMAGES_PER_S: dict[str, float] = {"vgg19": 40_000, "resnet18": 40_000,
                                          "resnet50": 12_000, "googlenet": 7_000}
GUESSED_ADVERSARIAL_PER_S: dict[str, float] = {"vgg19": 12_000, "resnet18": 12_000,
                                               "resnet50": 6_000, "googlenet": 4_200}
DEFAULT_GUESS = 20_000.0
DEFAULT_ADVERSARIAL_GUESS = 8_000.0
DECODER_GUESS = 20_000.0
CHECKPOINT_BYTES_PER_S = 300e6


@dataclass(frozen=True)
class Probe:
    """How a speed is measured: untimed warm-up steps, timed steps, largest probe batch."""

    warmup: int = 3
    steps: int = 8
    max_batch: int | None = None

    def batch(self, batch_size: int) -> int:
        return batch_size if self.max_batch is None else min(batch_size, self.max_batch)


@dataclass
class EpochPlan:
    """What a phase will run and why: its share of the budget and the measured speed."""

    epochs: int
    default_epochs: int
    budget_s: float | None = None
    images_per_s: float | None = None
    epoch_s: float | None = None
    fixed_s: float | None = None
    probe_s: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def plan_epochs(default: int, budget_s: float | None, epoch_s: float, fixed_s: float = 0.0,
                safety: float = SAFETY, minimum: int = 1) -> int:
    """Epochs that fit into budget_s (None: no limit): at most `default`, at least `minimum`
    (a one-cycle schedule shorter than a few epochs learns nothing worth the time it takes:
    better to overrun the phase and let the later phases give the time back)."""
    if default < 1:
        raise ValueError(f"default epochs must be at least 1, got {default}")
    if budget_s is None:
        return default
    if epoch_s <= 0:
        raise ValueError(f"epoch time must be positive, got {epoch_s}")
    floor = max(1, min(minimum, default))
    return max(floor, min(default, int((budget_s * safety - fixed_s) // epoch_s)))


def warm_up(device: torch.device) -> None:
    """Start the device's runtime (CUDA context, cuDNN, first kernels) before anything is timed,
    so that the first phase's speed probe does not pay the one-time start-up."""
    if device.type != "cuda":
        return
    x = torch.rand(8, 3, 32, 32, device=device, requires_grad=True)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).to(device)
    with autocast(device, "bf16"):
        conv(x).float().sum().backward()
    synchronize(device)


def share(remaining_s: float, weights: Sequence[float], index: int = 0) -> float:
    """The share of remaining_s for weights[index], against weights[index:] (the phases left)."""
    rest = sum(weights[index:])
    if rest <= 0:
        return max(0.0, remaining_s)
    return max(0.0, remaining_s) * weights[index] / rest


class Clock:
    """Seconds left of a budget (None: unlimited), counted from construction."""

    def __init__(self, budget_s: float | None, now: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.budget_s, self.now = budget_s, now
        self.start = now()

    def elapsed(self) -> float:
        return self.now() - self.start

    def remaining(self) -> float | None:
        return None if self.budget_s is None else self.budget_s - self.elapsed()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[], None], device: torch.device, probe: Probe) -> float:
    """Mean wall time of one step after warm-up (at least one timed step)."""
    for _ in range(probe.warmup):
        step()
    synchronize(device)
    steps = max(1, probe.steps)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _batch(n: int, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (n,), device=device)


def images_per_s(make_step: Callable[[int], Callable[[], None]], batch_size: int,
                 device: torch.device, probe: Probe) -> float:
    """Images/s of the step that make_step(n) builds for a batch of n (then released)."""
    n = probe.batch(batch_size)
    step = make_step(n)
    seconds = seconds_per_step(step, device, probe)
    del step
    _release(device)
    return n / seconds


def classifier_step(model_name: str, device: torch.device, precision: str, channels_last: bool,
                    compile_model: bool = False) -> Callable[[int], Callable[[], None]]:
    """`veil train classifier`'s own step, optimiser and loss, on a fresh `model_name`."""
    def make(n: int) -> Callable[[], None]:
        model = create_model(model_name).to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        config = make_classifier_config(model_name, precision=precision)
        optimizer = make_optimizer(model, config)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        forward = torch.compile(model) if compile_model else model
        x, y = _batch(n, device, channels_last)
        return lambda: classifier_training_step(forward, criterion, optimizer, x, y, precision)
    return make


def obfuscator_step(model_name: str, config: ObfuscatorConfig, device: torch.device
                    ) -> Callable[[int], Callable[[], None]]:
    """The adversarial step of `veil train obfuscator` against a (random) `model_name`."""
    def make(n: int) -> Callable[[], None]:
        nets = [create_model(name).to(device)
                for name in ("obfuscator", "deobfuscator", model_name)]
        if config.channels_last:
            nets = [m.to(memory_format=torch.channels_last) for m in nets]
        adversarial = AdversarialStep(*nets, config, device)
        x, y = _batch(n, device, config.channels_last)
        return lambda: adversarial(x, y, config.lam)
    return make


def decoder_step(device: torch.device) -> Callable[[int], Callable[[], None]]:
    """The fresh-decoder attacker's own step against a (random) obfuscator (fp32, Adam)."""
    def make(n: int) -> Callable[[], None]:
        defense = obfuscator_defense("probe", create_model("obfuscator")).to(device)
        decoder = create_model("deobfuscator").to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
        x = torch.rand(n, 3, 32, 32, device=device)
        return lambda: attacker_step(decoder, defense, optimizer, x)
    return make


def classifier_speed(model_name: str, batch_size: int, device: torch.device, precision: str,
                     channels_last: bool, probe: Probe) -> float:
    """Training images/s of `model_name` (as `veil train classifier`)."""
    return images_per_s(classifier_step(model_name, device, precision, channels_last),
                        batch_size, device, probe)


def obfuscator_speed(model_name: str, config: ObfuscatorConfig, device: torch.device,
                     probe: Probe) -> float:
    """Training images/s of an obfuscator/deobfuscator pair against `model_name`."""
    return images_per_s(obfuscator_step(model_name, config, device), config.batch_size, device,
                        probe)


def decoder_speed(batch_size: int, device: torch.device, probe: Probe) -> float:
    """Training images/s of the fresh-decoder attack."""
    return images_per_s(decoder_step(device), batch_size, device, probe)


def checkpoint_seconds(num_params: int, copies: int = 2) -> float:
    """Rough time to serialise, hash and write fp32 weights plus optimizer state."""
    return 4 * num_params * copies / CHECKPOINT_BYTES_PER_S + 0.05


# What a warm-start epoch costs, in adversarial epochs: the encoder stage runs the encoder alone
# (under a quarter of a step per image, README "Training an obfuscator in a CPU hour"); the
# identity and utility stages run the whole obfuscator and are counted as a full step.
WARM_START_COST = {"encoder": 0.25, "identity": 1.0, "utility": 1.0}


def warm_start_epochs_equivalent(warm_start: dict[str, float]) -> float:
    """The warm start's cost in adversarial epochs of the same images."""
    return sum(WARM_START_COST[stage] * epochs for stage, epochs in warm_start.items())


def guessed_speed(model_name: str, adversarial: bool = False) -> float:
    """The guessed training images/s of a classifier, or of an obfuscator against it."""
    if adversarial:
        return GUESSED_ADVERSARIAL_PER_S.get(model_name, DEFAULT_ADVERSARIAL_GUESS)
    return GUESSED_IMAGES_PER_S.get(model_name, DEFAULT_GUESS)
