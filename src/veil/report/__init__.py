"""Rendering shared by every report: figures (grids, trade-off plots) and Markdown helpers.

Above `core`, beside `metrics`; below `attacks` and `eval`, which render their own results with it.
"""
