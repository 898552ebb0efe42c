"""Evaluation of trained classifiers and obfuscators: the paper's Tables 1-3 (`tables`, rendered
by `render`), `veil evaluate` (`cli`), and every result schema's renderer (`schemas`,
`veil report`).
"""
