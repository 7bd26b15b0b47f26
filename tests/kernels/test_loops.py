"""The split of a batch's rows between threads (``loops.partition``), which every compiled kernel
reads: each row once, fours that do not depend on the thread count, balanced work; and the
warning when numba would run them on slow threads."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from elman.kernels.loops import even_partition, partition


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
