"""veil's cloud side: a frozen classifier behind HTTP (`veil serve`), and `veil classify`.

Importing this package imports nothing heavy: `veil.serve.app` needs fastapi (and torch only in
the process that runs the classifier: `veil.serve.inference`, by default a child process started
by `veil.serve.worker`), while `veil.serve.client_cli` (the edge command) needs neither.
"""
