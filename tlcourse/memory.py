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

:func:`release_free_memory` does the cheap part of that: memory the process freed but ``malloc``
kept for later goes back to the system (a few milliseconds), so the kernel's resident size falls
back to what it holds and the next cell's peak starts from there. :func:`tlcourse.setup` has the
notebook's kernel call it after every cell (:func:`release_after_every_cell`), the learner's own
cells included. Measured with ``benchmarks/notebooks.py`` against calling it at the end of every
``fit``, ``evaluate``, ``predict`` and extraction instead: the chapters' peaks stayed within
0.05 GiB of those (the largest 2.40 GiB then, 2.39 and 2.41 GiB in two runs with the hook), and
chapter 07's fell from 1.58 to 1.42 GiB.
"""
from __future__ import annotations

import ctypes
import ctypes.util

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


def release_after_every_cell() -> bool:
    """In IPython or Jupyter, call :func:`release_free_memory` after every cell the kernel runs, the
    learner's own cells included; ``True`` if registered (once per kernel), ``False`` outside IPython.

    A cell that trains, extracts features or evaluates frees its batches, optimizer and other
    temporaries when it ends; handing that memory back then keeps the next cell's peak from
    starting higher (a few milliseconds per cell).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    callbacks = shell.events.callbacks["post_run_cell"]
    if _release_after_cell not in callbacks:
        shell.events.register("post_run_cell", _release_after_cell)
    return True


def _release_after_cell(result=None) -> None:
    release_free_memory()
