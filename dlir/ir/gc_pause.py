"""Pausing Python's cyclic garbage collector while a graph is built or rewritten.

Building IR allocates many long-lived objects (values, nodes, types) and almost
no garbage cycles. CPython's collector still runs every few hundred
allocations, and its full collections walk every live object, so a large model
(10 000 layers) spent a growing share of its compile time there and the cost
per node rose with the model's size. Reference counting still frees ordinary
garbage while the collector is paused; cycles left behind are collected once
it runs again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off; nested uses and a caller's ``gc.disable()`` are kept."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["gc_paused"]
