"""The compiled kernels: plain C (``_kernel.c``: the metrics; ``_batchnorm.c``: training-mode
batch norm) built at install into one library and loaded with ctypes. Optional: where no C
compiler was there, each caller runs its Python path instead."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from collections.abc import Callable, Sequence


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        spec = importlib.util.find_spec("sirst_synth._kernel")
        if spec is None or not spec.origin:
            return None
        return ctypes.CDLL(spec.origin)
    except (OSError, ImportError):
        return None


def function(name: str, argtypes: Sequence, restype: type = ctypes.c_int) -> Callable | None:
    """The library's C function ``name`` with its signature set, or None where the library was
    not built (or predates the function)."""
    lib = _library()
    fn = getattr(lib, name, None) if lib is not None else None
    if fn is None:
        return None
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn
