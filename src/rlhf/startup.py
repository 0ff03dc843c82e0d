"""What every stage script does first, before its heavy imports (`startup.begin(__file__)`): set
glibc's allocator to keep the memory a training step frees, then hand the command to the flow's
warm process when there is one (`rlhf.prefork`).

The allocator: by default glibc returns large freed blocks to the kernel (its mmap threshold
adapts to the sizes freed, and the heap's top is trimmed past 128 KiB), so a training step that
frees and allocates the same few-MiB tensors again maps, zero-fills and faults in fresh pages every
step. On the EPYC that was 900-3,500 page faults a step of a 0.5M-parameter MLP and a quarter to
a third of its time, varying from one process to the next with where the adaptive threshold
landed. A fixed mmap threshold of 32 MiB (glibc's own ceiling for the adaptive one) and a trim
threshold of 256 MiB keep those blocks in the process: no faults, the same arithmetic. Set
RLHF_TUNE_MALLOC=0, or glibc's own GLIBC_TUNABLES / MALLOC_*_ variables, to leave the allocator
as it is; another allocator (LD_PRELOAD=libjemalloc.so ...) ignores these calls.

Only stdlib at module level.
"""

from __future__ import annotations

import os

from rlhf import prefork

MMAP_THRESHOLD = 32 << 20  # bytes: blocks below this come from the heap, not their own mapping
TRIM_THRESHOLD = 256 << 20  # bytes: free memory the heap keeps at its top before giving any back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def tune_malloc() -> bool:
    """Set the two thresholds with glibc's mallopt; False (and nothing changed) where the user
    set the allocator up or opted out, or where there is no glibc."""
    if os.environ.get("RLHF_TUNE_MALLOC", "1") == "0" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") \
            or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc
        return False


def begin(script: str) -> None:
    """A stage script's first call: the allocator, then the warm process (see the module's doc)."""
    tune_malloc()
    prefork.delegate(script)
