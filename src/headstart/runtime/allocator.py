"""glibc's allocator, set for training on the CPU.

By default glibc serves each allocation above 32 MB (and, until it adapts, above 128 KB) with a fresh
mmap and unmaps it on free, so a training step that allocates large activations (a batch of 224-px
images, a text batch's attention scores) faults in new zeroed pages on every step. Keeping blocks up
to 1 GiB on the heap for reuse made a MobileNetV2 training step at 224 px 1.5x faster and a MiniLM
step 1.2x, for 9% more peak memory on images (benchmarks/allocator.py, results/allocator.json); a
whole ELPV run of the fixed defaults took 336 s instead of 482 s, with the same predictions.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
HEAP_UP_TO = 1 << 30  # blocks up to this size come from the heap and are reused
USER_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")


def glibc():
    """The C library when it is glibc (Linux, not musl), else None."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc only  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def memory_reused_for_training():
    """Within the block, freed large blocks stay on the heap for the next step instead of going back
    to the system; after it, the free memory goes back (malloc_trim). The setting itself stays for
    the rest of the process (glibc cannot restore its adaptive default). Nothing changes on other
    systems, or where the user set glibc's malloc through the environment."""
    libc = glibc()
    if libc is None or any(name in os.environ for name in USER_SETTINGS):
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, HEAP_UP_TO)
    libc.mallopt(M_TRIM_THRESHOLD, HEAP_UP_TO)
    try:
        yield
    finally:
        libc.malloc_trim(0)
