"""glibc malloc settings for this process: freed tensor memory is kept for reuse.

Every search step allocates several MB-sized tensors ([rows, vocabulary]
logits and log-probs). glibc serves blocks that large with fresh `mmap`
pages and unmaps them on free, or trims them off the heap, so each step
page-faults tens of MB of zeroed memory again: 6,400 faults per step of
330 hypotheses, 4x the time of the log-softmax itself on a KVM guest
(measured). Keeping freed memory removes the faults; RSS then stays at its
high-water mark instead of shrinking between steps.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD_MAX = 2**31 - 1  # mallopt takes an int: trim only free tops over 2 GB


def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MB from the heap and keep freed memory (up to 2 GB).

    Process-wide, so the command line calls it, not the library (a program
    that embeds `Translator` may call it too). Not for `train`: a training
    run was no faster with it and its RSS 30 % higher (measured). Returns
    False where the C library is not glibc (nothing changes there).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    trimmed = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_MAX)
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    ok = bool(trimmed and mapped)
    log.debug("malloc keeps freed memory: %s", ok)
    return ok
