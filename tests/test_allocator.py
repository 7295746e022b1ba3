"""The allocator setting for training: large freed blocks stay on the heap within a run and go back after it.
Each case runs in its own process, as the setting is process-wide."""

import json
import os
import subprocess
import sys

import pytest

from headstart.runtime.allocator import USER_SETTINGS, glibc

# frees a 64 MiB tensor and reports the heap's free bytes then (mallinfo2's fordblks); within the
# setting, also the resident memory then and after the block (malloc_trim hands the pages back)
MEASURE = """
import ctypes, json, os, sys, torch
from headstart.runtime.allocator import memory_reused_for_training
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def free_after_a_large_block():
    block = torch.ones(16 * 1024 * 1024)  # 64 MiB of float32, written
    del block
    return libc.mallinfo2().fordblks
if sys.argv[1] == "within":
    with memory_reused_for_training():
        inside, resident_inside = free_after_a_large_block(), resident()
    print(json.dumps({"inside": inside, "resident_inside": resident_inside, "resident_after": resident()}))
else:
    print(json.dumps({"inside": free_after_a_large_block()}))
"""
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    glibc() is None or not hasattr(glibc(), "mallinfo2"),
    reason="the setting is glibc's (Linux); mallinfo2: glibc 2.33+",
)


def heap_free(case: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, case], capture_output=True, text=True, env={**clean, **env}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_freed_large_block_stays_on_the_heap_during_training_and_goes_back_after():
    within = heap_free("within")
    assert within["inside"] >= 64 * MIB, within  # kept for the next step's allocation
    assert within["resident_after"] < within["resident_inside"] - 48 * MIB, within  # given back when it ends


def test_by_default_glibc_unmaps_a_freed_large_block():
    assert heap_free("without")["inside"] < 64 * MIB  # what the setting changes


def test_a_user_setting_of_glibc_malloc_is_left_alone():
    assert heap_free("within", GLIBC_TUNABLES="glibc.malloc.check=0")["inside"] < 64 * MIB
