"""Keep a notebook's memory down: fewer malloc arenas for the many threads of two frameworks.

glibc's ``malloc`` gives each new thread its own memory pool ("arena"), up to eight per CPU core,
and memory freed in one arena is not reused by another. PyTorch and TensorFlow both start pools of
worker threads, so a kernel that trains in both frameworks holds far more memory than it uses.
Measured with ``benchmarks/notebooks.py`` on 2 CPU cores, two arenas instead of the default limit
cut chapter 03's peak from 2.5 GiB to 1.6 GiB.

:func:`configure_malloc` is what ``MALLOC_ARENA_MAX=2`` does, applied from inside the running
process. It affects threads that start afterwards, so :func:`tlcourse.setup` calls it before either
framework is imported. (A fixed, low mmap threshold would also hand large freed tensors back at
once, but every such tensor then costs fresh pages from the kernel; on 2 cores that made training
several times slower, so it is not set.)
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's mallopt() parameter number for the arena limit (malloc.h)


def configure_malloc(arenas: int = 2) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas; ``True`` if it agreed.

    Returns ``False``, changing nothing, where the C library is not glibc (macOS, Windows, musl).
    """
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
