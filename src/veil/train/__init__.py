"""Training: the classifier (`classifier`) and the obfuscator/deobfuscator pair (`obfuscator`,
with its warm starts in `warm_start` and its learning curve in `curve`), their run folders
(`runs`) and shared loop pieces (`engine`); `veil train` is `cli`.
"""
