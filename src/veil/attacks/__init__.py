"""Attacks on a frozen obfuscator and baselines scored on the same footing.

* fresh decoder (black box): a new deobfuscator, or a larger U-Net, trained from scratch on the
  sent images of the training split;
* white-box inversion: optimise an image so that the obfuscator maps it to the observed image;
* baselines: downsampling, blur, pixelation, noise and a random-weight obfuscator.
"""

from .baselines import BASELINES, DEFAULT_BASELINES, make_baseline
from .budget import AttackBudget
from .decoders import UNetDecoder, make_decoder
from .defenses import Defense, loaded_defense, obfuscator_defense
from .fresh_decoder import reconstruct, train_fresh_decoder
from .inversion import invert, total_variation
from .suite import ATTACKS, AttackSetup, attack_defense, run_attack_suite

__all__ = ["ATTACKS", "AttackBudget", "AttackSetup", "BASELINES", "DEFAULT_BASELINES", "Defense",
           "UNetDecoder", "attack_defense", "invert", "loaded_defense", "make_baseline",
           "make_decoder", "obfuscator_defense", "reconstruct", "run_attack_suite",
           "total_variation", "train_fresh_decoder"]
