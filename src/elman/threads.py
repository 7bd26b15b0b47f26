"""Blocks of work on threads at once: how the tokenizer's compiled loops use every core.

The loops are compiled without ``parallel=True`` and release the GIL (``nogil``), so plain
Python threads run them in parallel. numba's own parallel loop (``prange``) did the same, but
compiling it cost more than compiling the loops it ran: 1-2 s of a first run's CPU.

The model's kernels keep numba's parallel loops (OpenMP): they run between torch's operations,
whose OpenMP threads keep spinning for a while after each one, and a Python thread handed a
block there waited for a core: on 2 cores an IMDB epoch took 1.4-1.7 times as long.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def in_threads(block: Callable[[int], object], blocks: int) -> None:
    """``block(k)`` for every k < ``blocks`` at once, each on a thread of its own (block 0 on
    this one); returns when all are done, raising the first block's error if any failed. Each
    block handed to a thread costs about 70 µs (a wake-up and a reply)."""
    if blocks == 1:
        block(0)
        return
    pool = _thread_pool(blocks - 1, os.getpid())
    others = [pool.submit(block, k) for k in range(1, blocks)]
    try:
        block(0)
    finally:
        for other in others:
            other.result()


@functools.cache
def _thread_pool(workers: int, process: int) -> ThreadPoolExecutor:
    """The threads ``in_threads`` hands blocks to, made once per size and per process (a forked
    child has none of its parent's threads: ``process`` gives it a pool of its own)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"elman-kernels-{process}")


def spans(starts: np.ndarray, blocks: int) -> np.ndarray:
    """Bounds (blocks + 1,) that cut the items whose data begin at ``starts`` (N + 1,: item i
    holds ``starts[i]:starts[i + 1]``) into ``blocks`` runs of about equal data."""
    cuts = np.linspace(starts[0], starts[-1], blocks + 1)
    bounds = np.searchsorted(starts[:-1], cuts).astype(np.int64)
    bounds[0], bounds[-1] = 0, len(starts) - 1
    return bounds
