"""Encoded data on disk, in shards: written once by ``elman encode``, then read by training
without holding the training split in memory (a source larger than memory, or N workers that
each read only their part).

A folder written by ``write_encoded``::

    manifest.json          the source, the settings that shaped the arrays, the classes, and
                           every part's files with their row counts and sizes
    vocabulary.txt         text sources: one word per line; line i is id i
    train-00000.x.npy      the training split in shards of at most ``shard_size`` rows, each
    train-00000.y.npy      as three arrays (inputs, labels, lengths: ``elman.data.split.Split``)
    train-00000.lengths.npy
    ...
    val.*.npy, test.*.npy  one part each: evaluation reads them in order, memory-mapped

Training (``Shards.plan``): every epoch, a seeded shuffle deals the shards out to the workers
(worker r reads the r-th, (r+size)-th, ... of the shuffled shards), and each worker cuts each
of its shards, shuffled, into batches of ``batch_size`` rows; one shard is in memory at a time
(the next one is read in a background thread while the current one trains). The folder is
written under a temporary name and renamed when complete: a kill leaves no half-written data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from elman.data.source import Log, Splits
from elman.data.split import Split, batch_order
from elman.data.text import Vocabulary
from elman.errors import UserError
from elman.files import atomic_write, json_bytes

if TYPE_CHECKING:
    from elman.config import RunConfig

MANIFEST = "manifest.json"
VOCABULARY = "vocabulary.txt"
FORMAT = "elman-encoded-1"
ARRAYS = ("x", "y", "lengths")


class Shards:
    """A training split stored as shards on disk (``write_encoded``); ``len`` is its rows.

    ``fit`` trains on it as on a ``Split``, a shard at a time: ``plan`` gives this worker's
    batches for an epoch, ``batch`` reads one."""

    def __init__(self, folder: Path, names: list[str], rows: list[int], steps: int) -> None:
        self.folder, self.names, self.rows, self.steps = Path(folder), names, rows, steps
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elman-shards")
        self._upcoming: list[int] = []  # this worker's shards, in the order of its plan
        self._current: tuple[int, tuple[np.ndarray, ...]] | None = None
        self._next: tuple[int, Future] | None = None

    def __len__(self) -> int:
        return sum(self.rows)

    def plan(
        self, batch_size: int, bucket: bool, rank: int, size: int, generator: torch.Generator
    ) -> list[tuple[int, torch.Tensor | None]]:
        """Worker ``rank``'s steps of one epoch, (shard, rows) each: its shards in the
        epoch's seeded order, each shuffled (``batch_order``) and cut into batches. Every
        worker draws the same numbers from ``generator``, so all agree on the deal and on the
        number of steps: a worker whose shards run out first pads with steps that read no rows
        of its own (``None``), so that every worker takes part in every gradient average."""
        if len(self.names) < size:
            raise UserError(
                f"{self.folder} has {len(self.names)} training shard(s) for {size} workers: "
                "encode it again with a smaller --shard-size"
            )
        order = torch.randperm(len(self.names), generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (len(self.names),), generator=generator).tolist()
        batches = [sum(-(-self.rows[k] // batch_size) for k in order[r::size]) for r in range(size)]
        steps: list[tuple[int, torch.Tensor | None]] = []
        for shard in order[rank::size]:
            lengths = np.load(self._path(shard, "lengths"))
            shuffle = torch.Generator().manual_seed(seeds[shard])
            steps += [(shard, rows) for rows in batch_order(lengths, batch_size, bucket, shuffle)]
        steps += [(order[rank], None)] * (max(batches) - len(steps))
        self._upcoming = list(dict.fromkeys(shard for shard, _ in steps))
        return steps

    def batch(self, shard: int, rows: torch.Tensor | None) -> tuple[Split, bool]:
        """The ``rows`` of ``shard`` (None: its first row, not to be counted) and whether they
        count. Moving to a shard starts reading the plan's next one in the background."""
        if self._current is None or self._current[0] != shard:
            if self._next is not None and self._next[0] == shard:
                arrays = self._next[1].result()
            else:
                arrays = self._read(shard)
            self._current, self._next = (shard, arrays), None  # (the last one is let go)
            later = (
                self._upcoming[self._upcoming.index(shard) + 1 :] if shard in self._upcoming else []
            )
            if later:
                self._next = (later[0], self._reader.submit(self._read, later[0]))
        x, y, lengths = self._current[1]
        taken = rows.numpy() if rows is not None else np.zeros(1, dtype=np.int64)
        return Split(x[taken], y[taken], lengths[taken]), rows is not None

    def _read(self, shard: int) -> tuple[np.ndarray, ...]:
        return tuple(np.load(self._path(shard, name)) for name in ARRAYS)

    def _path(self, shard: int, array: str) -> Path:
        return self.folder / f"{self.names[shard]}.{array}.npy"


def write_encoded(
    splits: Splits, config: RunConfig, out: Path, shard_size: int, log: Log = print
) -> dict[str, Any]:
    """Write ``splits`` (read for ``config``) into the new folder ``out``: the training split
    in shards of at most ``shard_size`` rows. Returns the manifest."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder: give a new folder")
    if shard_size < 1:
        raise UserError(f"--shard-size must be a positive number of rows, got {shard_size}")
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers
    staging.mkdir(parents=True)
    try:
        parts = {"train": [], "val": [], "test": []}
        train = splits.train
        for number, start in enumerate(range(0, len(train), shard_size)):
            rows = np.arange(start, min(start + shard_size, len(train)))
            parts["train"].append(_write_part(staging, f"train-{number:05d}", train.take(rows)))
        for name in ("val", "test"):
            parts[name].append(_write_part(staging, name, getattr(splits, name)))
        if splits.vocabulary is not None:
            words = "\n".join(splits.vocabulary.words) + "\n"
            atomic_write(staging / VOCABULARY, words.encode())
        manifest = _manifest(splits, config, parts)
        atomic_write(staging / MANIFEST, json_bytes(manifest))
        if out.exists():
            out.rmdir()
        staging.rename(out)  # complete, or not there at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(
        f"Wrote {out}: {len(parts['train'])} training shard(s) of at most {shard_size} rows, "
        f"{len(splits.val)} validation and {len(splits.test)} test samples"
    )
    return manifest


def _write_part(folder: Path, name: str, split: Split) -> dict[str, Any]:
    for array in ARRAYS:
        with open(folder / f"{name}.{array}.npy", "wb") as file:
            np.save(file, np.ascontiguousarray(getattr(split, array)))
    return {"name": name, "rows": len(split), "bytes": _bytes(folder, name)}


def _bytes(folder: Path, name: str) -> int:
    return sum((folder / f"{name}.{array}.npy").stat().st_size for array in ARRAYS)


def _manifest(splits: Splits, config: RunConfig, parts: dict[str, list]) -> dict[str, Any]:
    shaped = {k: getattr(config.model, k, None) for k in ("vocab_size", "max_len")}
    return {
        "format": FORMAT,
        "source": config.source,
        "seed": config.train.seed,  # (the validation split's)
        "data": asdict(config.data),
        "model": {**{k: v for k, v in shaped.items() if v is not None}, **splits.model},
        "data_found": splits.data,
        "classes": list(splits.classes),
        "mean": None if splits.mean is None else splits.mean.tolist(),
        "std": None if splits.std is None else splits.std.tolist(),
        "steps": int(splits.train.steps),
        **parts,
    }


def read_encoded(folder: Path, source: str) -> Splits:
    """The splits of a folder written by ``write_encoded`` for ``source``: training as
    ``Shards``, validation and test memory-mapped. The folder's settings (the data's, and the
    vocabulary size and length that shaped the arrays) replace the run's (``Splits.model`` /
    ``Splits.data``)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest["source"] != source:
        raise UserError(
            f"{folder} holds {manifest['source']} data: train it with "
            f"elman train {manifest['source']} --encoded {folder}"
        )
    for part in manifest["train"] + manifest["val"] + manifest["test"]:
        if not all((folder / f"{part['name']}.{a}.npy").is_file() for a in ARRAYS) or (
            _bytes(folder, part["name"]) != part["bytes"]
        ):
            raise UserError(
                f"{folder}: the files of {part['name']} are missing or changed since elman "
                "encode wrote them: encode the data again"
            )
    train = Shards(
        folder,
        [part["name"] for part in manifest["train"]],
        [part["rows"] for part in manifest["train"]],
        manifest["steps"],
    )
    vocabulary = None
    if (folder / VOCABULARY).is_file():
        words = (folder / VOCABULARY).read_text(encoding="utf-8").split("\n")[:-1]
        vocabulary = Vocabulary(tuple(words))
    statistics = [
        None if manifest[k] is None else np.array(manifest[k], np.float32) for k in ("mean", "std")
    ]
    return Splits(
        train,
        _mapped_part(folder, "val"),
        _mapped_part(folder, "test"),
        manifest["classes"],
        vocabulary,
        *statistics,
        model=manifest["model"],
        data={**manifest["data"], **manifest["data_found"]},
        origin=hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest(),
    )


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(
            f"--encoded {folder} holds no {MANIFEST}: give a folder written by elman encode"
        )
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}): encode the data again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} was not written by this elman's encode: encode the data again")
    return manifest


def _mapped_part(folder: Path, name: str) -> Split:
    """A validation or test part: inputs memory-mapped (read in order by evaluation, so its
    size is bounded by the disk, not memory), labels and lengths in memory."""
    x = np.load(folder / f"{name}.x.npy", mmap_mode="c")
    y, lengths = (np.load(folder / f"{name}.{a}.npy") for a in ("y", "lengths"))
    return Split(x, y, lengths)
