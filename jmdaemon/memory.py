"""Give the heap that start-up freed back to the operating system, once, when the daemon is up.

Start-up (importing Twisted, the standard library it pulls in, jmdaemon and jmcore) allocates and
frees many temporary blocks. glibc's malloc keeps freed memory that lies below the top of its heap
(it only shrinks the heap from the top): in an idle ``python -m jmdaemon`` about 1.5 MiB of RSS is
heap that nothing uses. A full garbage collection followed by glibc's ``malloc_trim(0)`` hands
those pages back (benchmarks/bench_daemon_rss.py measures it; the one-file binary's start-up
leaves its heap dense, and it gains little there). It is done once, shortly after the AMP port
listens (:func:`release_after_start`); later allocations reuse the heap as usual.

Only on glibc Linux: elsewhere (musl, macOS, Windows, no ctypes) it logs one DEBUG line and does
nothing. It never raises and never waits for anything; it costs about 15 ms of the reactor's
thread, once.
"""
from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

# after the port listens, the reactor runs and the first client (the plugin's probe) is served
RELEASE_DELAY_S = 1.0


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` from the process's own symbols, or None where there is none.

    ``CDLL(None)`` (dlopen of the main program) finds it in the libc the interpreter already
    runs on, without ``ctypes.util.find_library``, which would start ``ldconfig``/``gcc``
    processes. musl and the BSDs have no ``malloc_trim``; ctypes is already imported by
    Twisted's ``filepath``, so this adds no import."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        fn = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_freed_memory() -> bool:
    """``gc.collect()``, then glibc's ``malloc_trim(0)``. True if the trim ran (glibc Linux);
    False, with a DEBUG log line, where it cannot. Never raises: memory housekeeping must not
    take the daemon down."""
    try:
        before = _rss_kib()
        gc.collect()
        trim = _malloc_trim()
        if trim is None:
            log.debug("no glibc malloc_trim here: freed heap stays with the process")
            return False
        trim(0)
        log.debug("released freed memory to the OS: RSS %s -> %s KiB", before, _rss_kib())
        return True
    except Exception as exc:       # pragma: no cover - ctypes failing at call time
        log.debug("releasing freed memory failed: %r", exc)
        return False


def release_after_start(reactor: Any, delay: float = RELEASE_DELAY_S) -> Any:
    """Schedule :func:`release_freed_memory` once, ``delay`` seconds from now (the reactor runs it
    once it is running). Call it when the daemon is set up: its port listens. Returns the
    reactor's ``IDelayedCall``."""
    return reactor.callLater(delay, release_freed_memory)
