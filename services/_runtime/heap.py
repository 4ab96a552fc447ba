"""Garbage-collector settings for processes that allocate many short-lived containers.

Ingest allocates a few container objects per frame (readings, values, rows, the unpacked
rows of a store batch) that reference counting frees; collecting the young generation every
700 allocations (Python's default) costs about a tenth of the ingest of one busy instance,
in the gateway process and in its store writer alike.
"""

from __future__ import annotations

import gc

__all__ = ["GC_YOUNG_THRESHOLD", "settle_heap"]

GC_YOUNG_THRESHOLD = 100_000
"""Allocations between two collections of the youngest generation (Python's default: 700).
The older generations keep their defaults."""


def settle_heap() -> None:
    """Move every object alive after start-up out of the collector's view (``gc.freeze``)
    and collect the young generation every :data:`GC_YOUNG_THRESHOLD` allocations.

    What start-up leaves (modules, Numba and numpy internals, the instances' caches) lives
    as long as the process; without this, every full collection triggered by the readings
    of an ingest walks all of it again.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
