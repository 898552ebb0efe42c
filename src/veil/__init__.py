"""veil: privacy-aware offloading of deep neural networks.

A small obfuscator network runs on the device and turns each image into one a human cannot read,
while a frozen cloud classifier trained on ordinary images still classifies it.
"""

from .core.version import VERSION as __version__

API = ("AttackSettings", "BlackBoxObfuscator", "EvaluateSettings", "ReproduceSettings",
       "TrainedObfuscator", "attack", "evaluate", "reproduce", "train_blackbox_obfuscator",
       "train_obfuscator")
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    # `import veil` stays light (the edge imports it without torch); the API loads on first use
    if name in API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'veil' has no attribute {name!r}")
