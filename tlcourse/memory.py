"""Keep a notebook's memory down: fewer malloc arenas, and freed memory handed back after training.

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

:func:`release_free_memory` does the cheap part of that once per call, when training or a pass over
a dataset (``fit``, ``evaluate``, ``predict``, ``extract_features``, ``block_inputs``) ends: memory
it freed but ``malloc`` kept for later goes back to the system (a few milliseconds), so the kernel's
resident size falls back to what it holds and the next cell's peak starts from there. Measured in
chapter 02's cells, run in one process: after the head-only training, 1.50 GiB resident instead of 1.95.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # glibc's mallopt() parameter number for the arena limit (malloc.h)


def _glibc_function(name: str, argtypes: tuple):
    """The C library's function ``name`` returning an int, or ``None`` where there is no such function."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


def configure_malloc(arenas: int = 2) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas; ``True`` if it agreed.

    Returns ``False``, changing nothing, where the C library is not glibc (macOS, Windows, musl).
    """
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    mallopt = _glibc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1


def release_free_memory() -> bool:
    """Hand memory that ``malloc`` holds but nothing uses back to the system (glibc's ``malloc_trim``).

    Returns ``True`` if some was released; ``False`` if none was, or where the C library is not glibc.
    """
    trim = _glibc_function("malloc_trim", (ctypes.c_size_t,))
    return trim is not None and trim(0) == 1


def releases_memory(function):
    """Decorator for a function that trains or runs a model over a dataset: once it has returned,
    and its optimizer, batches and other locals are gone, hand the memory they held back with
    :func:`release_free_memory`."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            release_free_memory()
    return wrapper
