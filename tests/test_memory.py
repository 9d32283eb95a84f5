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


# 300 MB in 64 KB blocks (below malloc's mmap threshold, so they live in the heap), each followed
# by a small block that stays: the freed space is holes between live blocks, which malloc does not
# give back on its own (only free space at the end of its heap).
RESIDENT_AFTER_FREE = r"""
import sys
sys.path.insert(0, {root!r})
from tlcourse.memory import release_free_memory
def resident_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
pins = []
def train():
    blocks = []
    for i in range(4_600):
        blocks.append(bytes([i % 256]) * 65_000)  # built at run time, one object each
        pins.append(bytes([i % 256]) * 1_000)  # larger than the 512 bytes Python serves from its own pools
    return len(blocks)
train()
if {release}:
    release_free_memory()  # what the hook that setup() registers does after every cell
print(resident_mb())
"""


def resident_mb(release: bool) -> int:
    result = subprocess.run([sys.executable, "-c", RESIDENT_AFTER_FREE.format(root=ROOT, release=release)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_memory_freed_by_a_training_function_goes_back_to_the_system_when_released():
    kept, released = resident_mb(release=False), resident_mb(release=True)
    assert kept - released > 200, (kept, released)


def test_release_without_glibc_reports_nothing_released(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError("no libc")))
    assert memory.release_free_memory() is False


def test_setup_releases_memory_after_every_cell_of_a_kernel_once(monkeypatch):
    import IPython

    class Events:
        def __init__(self):
            self.callbacks = {"post_run_cell": []}

        def register(self, name, function):
            self.callbacks[name].append(function)

    shell = type("Shell", (), {"events": Events()})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    released = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: released.append(True) or True)
    assert memory.release_after_every_cell() and memory.release_after_every_cell()
    assert len(shell.events.callbacks["post_run_cell"]) == 1  # registered once, however often setup() runs
    shell.events.callbacks["post_run_cell"][0](None)
    assert released == [True]
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert memory.release_after_every_cell() is False  # a plain script: nothing to hook into
