"""Evaluation of trained classifiers and obfuscators: the paper's Tables 1-3 (`tables`; rendered
by `report.kinds.evaluation`), `veil evaluate` (`cli`), `veil report` (`report_cli`) and
`veil models` (`models_cli`).
"""
