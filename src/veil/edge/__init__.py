"""The device side: fit a camera image, obfuscate it, send 8-bit PNGs, read the answers.

Needs numpy, pillow, onnxruntime and httpx only (`pip install veil[edge]`); a `.pt` obfuscator
(torch installed) is the one path that loads torch, lazily.
"""
