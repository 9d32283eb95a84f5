"""tlcourse.memory: fewer malloc arenas, counted by glibc itself in fresh processes."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tlcourse import memory

ROOT = str(Path(memory.__file__).resolve().parents[1])
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# As in a Jupyter kernel, a few threads already ran when malloc is configured; then eight threads
# each allocate while all are alive; malloc_info() lists one <heap> per arena.
COUNT_ARENAS = r"""
import ctypes, ctypes.util, os, sys, tempfile, threading
sys.path.insert(0, {root!r})
from tlcourse.memory import configure_malloc
together = threading.Barrier(8)
def work(wait=True):
    blocks = [bytearray(50_000) for _ in range(50)]
    if wait:
        together.wait()
    del blocks
early = [threading.Thread(target=work, args=(False,)) for _ in range(3)]
for t in early: t.start()
for t in early: t.join()
if {configure}:
    assert configure_malloc()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
path = tempfile.mktemp()
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
print(open(path).read().count("<heap nr="))
os.remove(path)
"""


def run(script: str, configure: bool) -> int:
    result = subprocess.run([sys.executable, "-c", script.format(root=ROOT, configure=configure)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_new_threads_share_two_arenas():
    assert run(COUNT_ARENAS, configure=False) > 2
    assert run(COUNT_ARENAS, configure=True) <= 2


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError("no libc")))
    assert memory.configure_malloc() is False
    with pytest.raises(ValueError, match="at least 1"):
        memory.configure_malloc(arenas=0)
