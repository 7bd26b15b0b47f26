"""Blocks of work on threads: every block once, at once, errors raised; and the cut of texts
into runs of about equal bytes."""

import threading

import numpy as np
import pytest

from elman.threads import in_threads, spans


def test_every_block_runs_once_on_its_own_thread():
    ran: dict[int, int] = {}
    both_in = threading.Barrier(3, timeout=10)  # all three blocks inside at the same time

    def block(k: int) -> None:
        both_in.wait()
        ran[k] = threading.get_ident()

    in_threads(block, 3)
    assert sorted(ran) == [0, 1, 2]
    assert ran[0] == threading.get_ident()  # block 0 on the caller's thread
    assert len(set(ran.values())) == 3


def test_a_failing_block_is_raised_after_every_block_ended():
    ended = []

    def block(k: int) -> None:
        if k == 1:
            raise ValueError("block 1 failed")
        ended.append(k)

    with pytest.raises(ValueError, match="block 1 failed"):
        in_threads(block, 3)
    assert sorted(ended) == [0, 2]


def test_one_block_runs_here():
    seen = []
    in_threads(lambda k: seen.append((k, threading.get_ident())), 1)
    assert seen == [(0, threading.get_ident())]


def test_spans_cut_texts_into_runs_of_about_equal_bytes():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2_000, 1_000)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for blocks in (1, 2, 3, 8):
        bounds = spans(starts, blocks)
        assert bounds[0] == 0 and bounds[-1] == len(lengths) and len(bounds) == blocks + 1
        assert np.all(np.diff(bounds) >= 0)
        sizes = starts[bounds[1:]] - starts[bounds[:-1]]
        assert sizes.max() - sizes.min() <= 2 * lengths.max()
    assert list(spans(np.array([0]), 2)) == [0, 0, 0]  # no text at all
