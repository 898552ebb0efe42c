"""The one restricted unpickler: pickles from files a user hands veil never run code.

`pickle.load` on such a file would execute whatever it asks for. `load_restricted` admits plain
data (dicts, lists, bytes, str, numbers: opcodes that need no lookup) and only the globals its
caller allows, refusing any other by name. Its two users: the official CIFAR-10 batches (numpy
arrays, `data.sources`) and `torch.export` programs, whose loader falls back to unpickling for
some entries (`no_code_unpickling`, which lets nothing but plain data through).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import torch


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global its reader does not allow."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, allowed: frozenset[tuple[str, str]], holds: str,
                 encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self.allowed, self.holds = allowed, holds

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise UnsafePickleError(f"refusing to load {module}.{name}: {self.holds}")
        return super().find_class(module, name)


def load_restricted(file: BinaryIO | bytes, allowed: frozenset[tuple[str, str]] = frozenset(),
                    holds: str = "veil unpickles plain data only",
                    encoding: str = "bytes") -> Any:
    """`pickle.load` admitting plain data and the (module, name) globals in `allowed`; any other
    global raises UnsafePickleError "refusing to load module.name: <holds>"."""
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    return _RestrictedUnpickler(stream, allowed, holds, encoding).load()


_SWAPPING = threading.Lock()
_NO_CODE = "a torch.export program holds tensors and plain data, not pickled objects"


@contextlib.contextmanager
def no_code_unpickling() -> Iterator[None]:
    """While it is open, this process unpickles nothing that can run code: `torch.load` always
    with weights_only=True, `pickle.loads` through `load_restricted` with no globals, torch's
    own C unpickler refused. For `torch.export.load`, which offers no hook of its own and falls
    back to full unpickling for some entries (sample inputs, pickled weights, opaque
    constants). The swap is process-wide, so it is held under a lock."""
    real = (torch.load, pickle.loads, torch._C._pickle_load_obj)

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real[0](*args, **kwargs)

    def plain_data(data: bytes, *_args: Any, **_kwargs: Any) -> Any:
        return load_restricted(data, holds=_NO_CODE, encoding="ASCII")

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise UnsafePickleError(f"refusing torch's own unpickler: {_NO_CODE}")

    with _SWAPPING:
        torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only_load, plain_data, refuse
        try:
            yield
        finally:
            torch.load, pickle.loads, torch._C._pickle_load_obj = real
