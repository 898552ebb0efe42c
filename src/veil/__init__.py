"""veil: privacy-aware offloading of deep neural networks.

A small obfuscator network runs on the device and turns each image into one a human cannot read,
while a frozen cloud classifier trained on ordinary images still classifies it.
"""

__version__ = "0.1.0"
