"""Reading the official CIFAR-10 python batches without running code from them.

The batches are pickles, and `pickle.load` on a file a user points veil at would execute whatever
the file asks for. This unpickler admits only what the official files are made of: dicts, lists,
bytes, str and int (plain pickle opcodes, no lookup needed) and numpy arrays, whose pickles name
only the globals below. Any other global is refused with an error that names it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # arrays pickled by numpy 1.x (the official files)
    ("numpy._core.multiarray", "_reconstruct"),  # arrays pickled by numpy 2.x
    ("numpy._core.numeric", "_frombuffer"),  # arrays pickled at protocol 5
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2 (a pure function)
}


class UnsafePickleError(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds "
                                    "only dicts, lists, bytes, numbers and numpy arrays")
        return super().find_class(module, name)


def load_restricted(file: BinaryIO | bytes, encoding: str = "bytes") -> Any:
    """`pickle.load` that only admits the globals a CIFAR-10 batch file needs."""
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    return _RestrictedUnpickler(stream, encoding=encoding).load()
