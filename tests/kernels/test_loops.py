"""The split of a batch's rows between threads (``loops.partition``), which every compiled kernel
reads: each row once, fours that do not depend on the thread count, balanced work; the warning
when numba would run them on slow threads; and the call of a function compiled alone from a
parallel loop (``compiled_alone``, ``call_at``)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from numba import njit, prange
from numba.core.errors import TypingError

from elman.kernels.loops import call_at, compiled_alone, even_partition, partition


def _threads_rows(order, bounds, fours):
    """Per thread: (its groups of four as sets, its single rows)."""
    split = []
    for k in range(len(bounds) - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        grouped = 4 * fours[k]
        groups = [frozenset(rows[i : i + 4].tolist()) for i in range(0, grouped, 4)]
        split.append((groups, rows[grouped:].tolist()))
    return split


def _with_threads(threads, call):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return call()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("equal", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 4, 7, 32, 33])
def test_partition_takes_each_row_once_in_the_same_fours_on_any_thread_count(batch, equal):
    rng = np.random.default_rng(batch)
    work = np.full(batch, 50) if equal else rng.integers(1, 500, batch)
    groups_by_threads = []
    for threads in (1, 2, 3):
        order, bounds, fours = _with_threads(threads, lambda: partition(work))
        assert sorted(order.tolist()) == list(range(batch))
        assert bounds[0] == 0 and bounds[-1] == batch and np.all(np.diff(bounds) >= 0)
        assert len(bounds) - 1 <= threads and len(fours) == len(bounds) - 1
        split = _threads_rows(order, bounds, fours)
        groups = {group for thread_groups, _ in split for group in thread_groups}
        assert sum(len(thread_groups) for thread_groups, _ in split) == batch // 4
        groups_by_threads.append(groups)
        if not equal and threads == 2 and batch >= 32:  # the greedy split balances the work
            loads = [
                sum(4 * max(work[list(g)]) for g in thread_groups) + sum(work[singles])
                for thread_groups, singles in split
            ]
            assert max(loads) <= 1.25 * min(loads)
    assert groups_by_threads[0] == groups_by_threads[1] == groups_by_threads[2]


def test_even_partition_follows_the_thread_count_it_is_called_with():
    """Cached per batch size and thread count: a cached split never outlives a change of
    ``torch.set_num_threads``."""
    one = _with_threads(1, lambda: even_partition(32))
    two = _with_threads(2, lambda: even_partition(32))
    assert len(one[1]) == 2 and one[1][-1] == 32 and one[2].tolist() == [8]
    assert len(two[1]) == 3 and two[1].tolist() == [0, 16, 32] and two[2].tolist() == [4, 4]
    again = _with_threads(1, lambda: even_partition(32))
    assert [a.tolist() for a in again] == [a.tolist() for a in one]


def _import_kernels(setup: str, **environment: str) -> subprocess.CompletedProcess:
    """Imports the kernels in a fresh process (numba picks its threads once a process), with
    warnings as errors, after ``setup``."""
    code = f"{setup}; import warnings; warnings.simplefilter('error'); import elman.kernels.loops"
    env = {**os.environ, **environment}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


NO_OPENMP = (  # as where the GNU OpenMP runtime is missing (and TBB too)
    "import sys; sys.modules['numba.np.ufunc.omppool'] = None;"
    " sys.modules['numba.np.ufunc.tbbpool'] = None"
)


def test_slow_threads_are_reported_with_what_to_do():
    """Without OpenMP numba falls back to its workqueue, and importing the kernels says so."""
    result = _import_kernels(NO_OPENMP)
    assert result.returncode != 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "RuntimeWarning" in last and "'workqueue' threads" in last
    assert "apt install libgomp1" in last and "NUMBA_THREADING_LAYER=omp" in last


def test_a_threading_layer_the_user_chose_is_not_questioned():
    result = _import_kernels(NO_OPENMP, NUMBA_THREADING_LAYER="workqueue")
    assert result.returncode == 0, result.stderr


@njit(nogil=True)
def _squares(x, out, rows):
    for b in rows:
        for i in range(x.shape[1]):
            out[b, i] = x[b, i] * x[b, i]


@njit(parallel=True)
def _squares_in_blocks(squares, x, out, order, bounds):
    for k in prange(len(bounds) - 1):
        call_at(squares, (x, out, order[bounds[k] : bounds[k + 1]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_parallel_loop_calls_the_function_compiled_alone_for_its_types(dtype):
    x = np.random.default_rng(0).standard_normal((10, 7)).astype(dtype)
    out = np.zeros_like(x)
    order, bounds = np.arange(10)[::-1].copy(), np.array([0, 3, 10])
    address = compiled_alone(_squares, (x, out, order))
    _squares_in_blocks(address, x, out, order, bounds)
    assert np.array_equal(out, x * x)  # every row, each block's, written
    assert compiled_alone(_squares, (x, out, order)) == address  # compiled once per dtypes
    other = np.float64 if dtype == np.float32 else np.float32
    assert compiled_alone(_squares, (x.astype(other), out.astype(other), order)) != address


def test_arrays_must_be_c_contiguous_on_both_sides():
    x = np.ones((6, 8), dtype=np.int64)
    order, bounds = np.arange(6), np.array([0, 6])
    with pytest.raises(ValueError, match="C-contiguous"):  # compiled for strided arrays: no
        compiled_alone(_squares, (x[:, ::2], np.zeros((6, 4), np.int64), order))
    address = compiled_alone(_squares, (x, np.zeros_like(x), order))
    with pytest.raises(TypingError, match="C-contiguous"):  # called with them: refused too
        _squares_in_blocks(address, x[:, ::2], np.zeros((6, 4), np.int64), order, bounds)
