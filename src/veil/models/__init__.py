"""veil's networks: the paper's obfuscator and the CIFAR-10 classifier zoo."""

from .classifiers import Classifier, Normalize
from .frozen import FrozenClassifier, freeze
from .obfuscator import Obfuscator
from .registry import PAPER_CLASSIFIERS, create_model, list_models, model_kind

__all__ = ["Classifier", "FrozenClassifier", "Normalize", "Obfuscator", "PAPER_CLASSIFIERS",
           "create_model", "freeze", "list_models", "model_kind"]
