"""veil's cloud side: a frozen classifier behind HTTP (`veil serve`).

Importing this package imports nothing heavy: `veil.serve.app` needs fastapi, and torch is needed
only in the process that runs the classifier (`veil.serve.inference`, by default a child process
started by `veil.serve.worker`). The device side is `veil.edge`.
"""
