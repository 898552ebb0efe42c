"""Training, as torchvision's references shape it: one module per trainer, read top to bottom
(`classifier`; `obfuscator`: config and recipes, the adversarial step, the trainer; with its
`warm_start` stages and learning `curve`; `surrogate`: a classifier distilled from a server's
answers), one common module (`common`: settings base, run folder, resume, torchrun, the epoch
loop) and one CLI (`cli`: `veil train`).
"""
