"""`veil reproduce`: the whole paper in one resumable command (train, evaluate, attack, report).

The top of the analysis stack: it runs `train`, `attacks` and `eval` and may import all three;
nothing but the CLI imports it.
"""
