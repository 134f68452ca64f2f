"""Process memory: the peak resident set size, logged per run (``run/peak_rss_mb``) and at
phase ends (``run/peak_rss_mb_after_<phase>``) so a run's MLflow record shows which phase
raised it; and the allocator setting that lets freed tensor memory go back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

#: Allocations of at least this many bytes get their own pages from the system (glibc's
#: ``M_MMAP_THRESHOLD``, its default starting value), returned to it when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def peak_rss_mb() -> float:
    """The highest resident set size this process has had so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def phase_metric(phase: str) -> dict[str, float]:
    """``{"run/peak_rss_mb_after_<phase>": peak so far}`` (the running peak, monotone)."""
    from polylora.record.names import peak_rss_after_metric

    return {peak_rss_after_metric(phase): peak_rss_mb()}


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` so every large tensor is
    mapped on its own and unmapped when freed. Left dynamic (glibc's default), the threshold
    rises to the largest block freed so far (up to 32 MiB), after which activations, logits
    and KV caches come from the heap, whose freed holes stay resident and add to the next
    phase's peak. Changes no computed value. Returns whether it applied (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep its allocator as it is
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_memory() -> None:
    """Collect what a stopped job left unreferenced (model, optimizer state) and hand cached
    GPU memory back, so the next trial in this process starts from an empty device."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
