"""What `veil reproduce` runs: the paper's five classifier slots, the scales that fill them, and
the phase graph (which phase needs which)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .reproduce_budget import Probe


@dataclass(frozen=True)
class Slot:
    """One of the paper's five classifiers: a name used for folders and labels, the zoo model
    that fills it at this scale, and its seed."""

    name: str
    model: str
    seed: int


@dataclass(frozen=True)
class Scale:
    name: str
    slots: tuple[Slot, ...]
    classifier_epochs: dict[str, int]  # by zoo model
    classifier_batch: int
    obfuscator_epochs: int  # adversarial epochs, after the recipe's warm start
    obfuscator_batch: int
    attack_epochs: int
    attack_batch: int
    train_subset: int | None  # classifier training images (None: all)
    obfuscator_subset: int | None  # obfuscator training images
    attack_subset: int | None  # training images the attacker queries
    test_subset: int | None  # test images for per-epoch and final evaluation
    probe: Probe = field(default_factory=Probe)
    fixed_s: float = 5.0  # per phase: loading data and models, the final checkpoint
    min_classifier_epochs: int = 1  # the budget never plans fewer (see plan_epochs)
    min_obfuscator_epochs: int = 1
    obfuscator_recipe: str = "staged"
    obfuscator_warm_start: tuple[tuple[str, float], ...] = ()  # stage, epochs (a frozen mapping)

    def epochs_for(self, model: str) -> int:
        return self.classifier_epochs.get(model, 1)


PAPER_SLOTS = (Slot("vgg19", "vgg19", 0), Slot("resnet18-s0", "resnet18", 0),
               Slot("resnet18-s1", "resnet18", 1), Slot("resnet50", "resnet50", 0),
               Slot("googlenet", "googlenet", 0))
# Small stand-ins, one per paper slot (resnets for the residual slots), distinct seeds.
TINY_SLOTS = (Slot("vgg19", "fastnet_tiny", 0), Slot("resnet18-s0", "resnet9_tiny", 0),
              Slot("resnet18-s1", "resnet9_tiny", 1), Slot("resnet50", "resnet9_tiny", 2),
              Slot("googlenet", "fastnet_tiny", 1))

SCALES: dict[str, Scale] = {
    # About 10 min on one H100 at the speeds measured there (reproduce_budget's guesses), data
    # decoding included; --budget-minutes scales the epochs down to fit. The obfuscators follow
    # the staged recipe the CPU curves chose (results/cpu/learning_speed): an encoder warm start
    # (2 epochs, at a quarter of a step's cost each), then adversarial epochs with the feature
    # target, at batch 128 (the CPU's lesson, more updates per image, within what keeps a GPU
    # busy). Sized from the CPU curves and the guessed GPU speeds; not yet run on a GPU.
    "paper": Scale("paper", PAPER_SLOTS,
                   {"vgg19": 25, "resnet18": 25, "resnet50": 15, "googlenet": 12},
                   classifier_batch=512, obfuscator_epochs=4, obfuscator_batch=128,
                   attack_epochs=3, attack_batch=256, train_subset=None, obfuscator_subset=None,
                   attack_subset=None, test_subset=None, probe=Probe(3, 8),
                   # vgg19 learnt nothing in one one-cycle epoch (results/paper); obfuscators
                   # are near 45 % after one epoch and 60 % after three (results/gpu)
                   min_classifier_epochs=5, min_obfuscator_epochs=3,
                   obfuscator_warm_start=(("encoder", 2.0),)),
    "tiny": Scale("tiny", TINY_SLOTS, {}, classifier_batch=64, obfuscator_epochs=1,
                  obfuscator_batch=32, attack_epochs=1, attack_batch=32, train_subset=512,
                  obfuscator_subset=64, attack_subset=64, test_subset=64,
                  probe=Probe(0, 1, max_batch=8), fixed_s=1.0,
                  obfuscator_warm_start=(("encoder", 1.0),)),
}


# --- phases ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # classifier, obfuscator, tables, attack, report
    slot: Slot | None = None
    depends: tuple[str, ...] = ()


def build_phases(slots: tuple[Slot, ...]) -> list[Phase]:
    classifiers = [Phase(f"classifier:{s.name}", "classifier", s) for s in slots]
    obfuscators = [Phase(f"obfuscator:{s.name}", "obfuscator", s, (f"classifier:{s.name}",))
                   for s in slots]
    tables = Phase("tables", "tables", None,
                   tuple(p.name for p in classifiers + obfuscators))
    attacks = [Phase(f"attack:{s.name}", "attack", s,
                     (f"classifier:{s.name}", f"obfuscator:{s.name}")) for s in slots]
    report = Phase("report", "report", None, ("tables", *(p.name for p in attacks)))
    return [*classifiers, *obfuscators, tables, *attacks, report]
