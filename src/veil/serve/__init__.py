"""veil's cloud side: a frozen classifier behind HTTP (`veil serve`), and `veil classify`.

Importing this package imports nothing heavy: `veil.serve.app` needs fastapi and torch, while
`veil.serve.client_cli` (the edge command) needs neither.
"""
