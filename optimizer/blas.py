"""Limit numpy's OpenBLAS threads during a solve: the condensed QP's matrices are small, and on a busy host
OpenBLAS's worker threads spin and wait on each other (measured: 65 ms per solve with 2 threads, 17 ms with 1).

Works with the OpenBLAS that numpy wheels bundle (numpy.libs/); with any other BLAS it does nothing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

_NAMES = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_lock = threading.Lock()
_Api = tuple[Callable[..., int], Callable[..., int]]
_api: _Api | None = None
_looked_up = False


def _openblas() -> _Api | None:
    """Return (get, set) thread-count functions of numpy's bundled OpenBLAS, or None if there is none."""
    global _api, _looked_up
    if not _looked_up:
        _looked_up = True
        for path in sorted(glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get, put in _NAMES:
                if hasattr(lib, get) and hasattr(lib, put):
                    _api = (getattr(lib, get), getattr(lib, put))
                    break
            if _api:
                break
    return _api


_users = 0  # blocks inside blas_threads now (threads of one process share the BLAS setting)
_saved = 0  # the thread count before the first of them


@contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """Run the block with numpy's OpenBLAS limited to `count` threads (None: leave it as it is), then restore."""
    global _users, _saved
    api = _openblas() if count is not None else None
    if api is None or count is None:
        yield
        return
    get, put = api
    with _lock:
        if _users == 0:
            _saved = int(get())
        _users += 1
        put(int(count))
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                put(_saved)
