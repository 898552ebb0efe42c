"""Evaluation of trained classifiers and obfuscators: the paper's Tables 1-3, reports, metrics.

Kept import-free so that `veil.train` can use `veil.eval.metrics` without a cycle.
"""
