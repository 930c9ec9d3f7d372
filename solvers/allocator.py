"""glibc allocator tuning for CPU work: keep freed blocks instead of returning them to the OS.

glibc serves blocks above ``M_MMAP_THRESHOLD`` (dynamic, starting at 128 KiB) with fresh
``mmap`` calls and trims the heap above ``M_TRIM_THRESHOLD``, so every solver step or network
call that allocates a few-hundred-KiB spectrum or activation pays page faults again. Raising
both thresholds makes the autoencoder and FNO calls of a closure sample about 2x faster on CPU
(measured in ``benchmarks/sampling.py``; DESIGN.md "Where the time goes") and steadies the
solver's steps. The setting is process-wide and harmless for correctness; it is applied only
when :func:`tune_allocator` is called: by the CLI commands that integrate (``data generate``,
``simulate``), the ensemble's solver workers and :func:`models.closures.load_closure`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_applied = False


def tune_allocator(threshold_bytes: int = 256 * 1024 * 1024) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold_bytes``; True if applied (idempotent).

    A no-op (False) where the C library is not glibc (macOS, musl) or ``mallopt`` is missing.
    """
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.debug("mallopt unavailable; allocator left as is")
        return False
    ok = mallopt(M_TRIM_THRESHOLD, threshold_bytes) == 1 and mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1
    _applied = ok
    logger.debug("glibc mmap/trim thresholds set to %d bytes: %s", threshold_bytes, ok)
    return ok
