"""What every data source shares: files out of a folder or archive, arrays per split, class
names, seeded hold-outs.

A source (``imdb``, ``textfiles``, ``series``, ``speech``) reads its files into ``Split``s:
``x`` is token ids (N, T) int64 for text, or values (N, T, F) float32 for numbers, with NaN
where a step is missing or padding; ``y`` is (N,) float32 0/1 for two classes, (N,) int64 class
indices for more, or (N, T, F) float32 next-step targets for forecasting.
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from elman.data.archive import archive_files
from elman.errors import UserError
from elman.files import atomic_write


def files_in(path: Path, suffix: str) -> dict[PurePosixPath, bytes]:
    """Every file whose name ends with ``suffix`` (any case) in a folder or a .tar(.gz), by its
    path inside it. Read straight out of an archive: nothing is extracted."""
    if path.is_dir():
        return {
            PurePosixPath(p.relative_to(path).as_posix()): p.read_bytes()
            for p in path.rglob("*")
            if p.name.lower().endswith(suffix) and p.is_file()
        }
    files = {}
    try:
        for name, data in archive_files(path, lambda name: name.lower().endswith(suffix)):
            files[PurePosixPath(name)] = data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise UserError(f"cannot read {path} ({error}): it is truncated or corrupted") from None
    return files


@dataclass
class Split:
    x: np.ndarray  # (N, T) int64 ids, or (N, T, F) float32 values (NaN = no value)
    y: np.ndarray  # (N,) labels, or (N, T, F) targets
    lengths: np.ndarray  # (N,) steps with a value (start token included for text)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def steps(self) -> int:
        """Time steps per sample (the inputs' second axis)."""
        return self.x.shape[1]

    def take(self, rows: np.ndarray) -> Split:
        return Split(self.x[rows], self.y[rows], self.lengths[rows])


def natural_key(text: str) -> list:
    """Sort key that orders numbers by value: "2_a.txt" before "10_a.txt", "9" before "10"."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


def class_names(labels: Sequence[str]) -> list[str]:
    """The distinct labels in a fixed order: numerically if all are numbers, else naturally."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct, key=natural_key)


def encode_labels(labels: Sequence[str], names: Sequence[str], where: Sequence[str]) -> np.ndarray:
    """Label strings -> the float32 0/1 (two classes) or int64 indices (more) training uses.

    A label outside ``names`` is refused, naming ``where[i]`` (e.g. "data.csv line 7")."""
    index = {name: i for i, name in enumerate(names)}
    for label, place in zip(labels, where, strict=True):
        if label not in index:
            raise UserError(
                f"{place}: label {label!r} is not one of the model's classes "
                f"({', '.join(names)}); fix the label or train a model that knows it"
            )
    ids = np.array([index[label] for label in labels], dtype=np.int64)
    return ids.astype(np.float32) if len(names) == 2 else ids


def holdout_size(size: float, total: int, what: str, least: int = 1) -> int:
    """``size`` as a count (>= ``least``) or a fraction (< 1) of ``total``, checked to leave
    samples on both sides; ``least=0`` lets 0 hold out nothing (validation: train on
    everything, as Keras' ``validation_split=0``)."""
    count = int(round(size * total)) if 0 < size < 1 else int(size)
    if not least <= count < total:
        raise UserError(
            f"{what} must leave samples on both sides: got {size} of {total} samples; give a "
            f"fraction between 0 and 1 or a count between {least} and the number of samples - 1"
        )
    return count


def mapped(split: Split, path: Path) -> Split:
    """``split`` with its inputs ``x`` memory-mapped from the .npy file ``path`` (written once,
    atomically, if missing): processes that map one file share one copy of it in memory (the
    workers of a data-parallel job), and arrays larger than memory are paged in as read. The
    mapping is copy-on-write: the file never changes."""
    if path.exists():
        with contextlib.suppress(ValueError, OSError):  # unreadable: written again
            return Split(np.load(path, mmap_mode="c"), split.y, split.lengths)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(split.x))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return Split(np.load(path, mmap_mode="c"), split.y, split.lengths)


def split_rows(
    total: int, size: float, seed: int, what: str, least: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle of ``range(total)`` cut into (kept, held out); the held-out rows are the
    last ``size`` of the shuffle (the same rule as the IMDB validation split)."""
    count = holdout_size(size, total, what, least)
    order = np.random.default_rng(seed).permutation(total)
    return order[: total - count], order[total - count :]


def batch_order(
    lengths: np.ndarray, batch_size: int, bucket: bool, generator: torch.Generator
) -> list[torch.Tensor]:
    """The rows of each batch of one epoch, shuffled with ``generator``.

    With ``bucket``, the shuffled rows are cut into pools of 50 batches, each pool is sorted by
    review length and cut into batches, and the batches are shuffled: every batch then holds
    reviews of similar length, so little padding is left to compute, while the epoch still
    mixes all lengths in random order.
    """
    order = torch.randperm(len(lengths), generator=generator)
    if bucket:
        pool = batch_size * 50
        lengths_t = torch.from_numpy(np.asarray(lengths))
        order = torch.cat(
            [chunk[torch.argsort(lengths_t[chunk], stable=True)] for chunk in order.split(pool)]
        )
    batches = list(order.split(batch_size))
    if bucket:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches
