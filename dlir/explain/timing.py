"""Small shared pieces of the measurements: wall-clock medians and a quiet file descriptor."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

# Lines the frameworks' profilers print from C++ on every start and stop: not news to the user.
_NOISE = re.compile(r"USDT:|SyncActivityProfilerHandler|profiler_(start|stop)")


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    """The median wall-clock time of ``repeat`` calls of ``fn``, in milliseconds."""
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


def time_call(run: Callable[..., Any], feeds: dict[str, Any], repeat: int) -> tuple[float, float]:
    """The first call's time (a trace, a warm-up) and the median of ``repeat`` more, in milliseconds."""
    start = time.perf_counter()
    run(**feeds)
    first = round((time.perf_counter() - start) * 1e3, 3)
    return first, median_ms(lambda: run(**feeds), repeat)


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Hold back what C++ code writes to fd 1 and 2 inside; lines that are not known noise come back after."""
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(tmp.fileno(), fd)
        except OSError:  # no usable descriptors: nothing to filter
            pass
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(True) if not _NOISE.search(ln)]
            if kept:
                sys.stderr.write("".join(kept))
