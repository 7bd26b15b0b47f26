"""Encoded data on disk, in shards: written once by ``elman encode``, then read by training
without holding the training split in memory (a source larger than memory, or N workers that
each read only their part).

A folder written by ``EncodedWriter`` (``elman encode``, ``elman.workflow.encode``)::

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
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elman.data.source import Encoding, Learned, Splits
from elman.data.split import Split, batch_order
from elman.data.text import VOCABULARY, read_vocabulary, vocabulary_bytes
from elman.errors import UserError
from elman.files import atomic_write, json_bytes

MANIFEST = "manifest.json"
FORMAT = "elman-encoded-1"
ARRAYS = ("x", "y", "lengths")


class Shards:
    """A training split stored as shards on disk (``EncodedWriter``); ``len`` is its rows.

    ``fit`` trains on it as on a ``Split``, a shard at a time: ``plan`` gives this worker's
    batches for an epoch, ``batch`` reads one."""

    def __init__(
        self,
        folder: Path,
        names: list[str],
        rows: list[int],
        steps: int,
        check: Callable[[str, Split], None] | None = None,
    ) -> None:
        self.folder, self.names, self.rows, self.steps = Path(folder), names, rows, steps
        self.check = check  # (name, arrays): refuses values the manifest does not allow
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elman-shards")
        self._upcoming: list[int] = []  # this worker's shards, in the order of its plan
        self._current: tuple[int, Split] | None = None
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
                "encode it again with a smaller `shard_size`"
            )
        order = torch.randperm(len(self.names), generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (len(self.names),), generator=generator).tolist()
        batches = [sum(-(-self.rows[k] // batch_size) for k in order[r::size]) for r in range(size)]
        steps: list[tuple[int, torch.Tensor | None]] = []
        for shard in order[rank::size]:
            lengths = np.load(_npy(self.folder, self.names[shard], "lengths"))
            shuffle = torch.Generator().manual_seed(seeds[shard])
            steps += [(shard, rows) for rows in batch_order(lengths, batch_size, bucket, shuffle)]
        last = steps[-1][0] if steps else order[rank]  # (the shard in memory: not read again)
        steps += [(last, None)] * (max(batches) - len(steps))
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
        taken = rows.numpy() if rows is not None else np.zeros(1, dtype=np.int64)
        return self._current[1].take(taken), rows is not None

    def _read(self, shard: int) -> Split:
        split = Split(*(np.load(_npy(self.folder, self.names[shard], a)) for a in ARRAYS))
        if self.check is not None:
            self.check(self.names[shard], split)
        return split


class EncodedWriter:
    """Writes ``elman encode``'s folder ``out`` from rows given in pieces (``add``), holding
    at most a shard of them: training rows are cut into shards of ``shard_size`` as they come;
    validation and test rows go to disk as they come and are joined into one file each by
    ``finish``. A context manager: the folder appears, complete, when ``finish`` renames it
    into place; a block left by an error (or a kill) leaves no folder behind."""

    def __init__(self, out: Path, shard_size: int) -> None:
        self.out, self.shard_size = Path(out), shard_size
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UserError(f"`out` {out} exists and is not an empty folder: give a new folder")
        if shard_size < 1:
            raise UserError(f"`shard_size` must be a positive number of rows, got {shard_size}")
        self.staging = self.out.with_name(f".{self.out.name}.tmp")
        self.parts: dict[str, list] = {"train": [], "val": [], "test": []}
        self.pending: Split | None = None  # training rows short of a shard
        self.pieces: dict[str, list[str]] = {"val": [], "test": []}

    def __enter__(self) -> EncodedWriter:
        shutil.rmtree(self.staging, ignore_errors=True)  # a killed run's leftovers
        self.staging.mkdir(parents=True)
        return self

    def __exit__(self, kind, error, trace) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)  # (gone once finished: renamed)

    def add(self, part: str, rows: Split) -> None:
        """Rows of ``part`` ("train", "val" or "test"), in the order they are to be kept."""
        if part != "train":
            name = f"{part}-piece-{len(self.pieces[part]):05d}"
            self.pieces[part].append(name)
            _write_part(self.staging, name, rows)
            return
        pending = rows if self.pending is None else _joined([self.pending, rows])
        full = len(pending) - len(pending) % self.shard_size
        for start in range(0, full, self.shard_size):
            self._shard(pending.take(np.arange(start, start + self.shard_size)))
        self.pending = pending.take(np.arange(full, len(pending)))  # short of a shard

    def _shard(self, rows: Split) -> None:
        name = f"train-{len(self.parts['train']):05d}"
        self.parts["train"].append(_write_part(self.staging, name, rows))

    def finish(
        self, source: str, settings: Any, encoding: Encoding, learned: Learned
    ) -> dict[str, Any]:
        """The last shard, validation and test joined, the vocabulary and the manifest
        written, and the folder renamed into place: the data of ``source`` read with its
        ``settings`` and the ``encoding``, and what it ``learned``."""
        if self.pending is not None and len(self.pending):
            self._shard(self.pending)
        if not self.parts["train"]:
            raise UserError("no training samples to encode")
        example = [np.load(self._file("train-00000", a), mmap_mode="r") for a in ARRAYS]
        for part in ("val", "test"):
            self.parts[part].append(self._join(part, example))
        if learned.vocabulary is not None:
            atomic_write(self.staging / VOCABULARY, vocabulary_bytes(learned.vocabulary))
        steps = int(example[0].shape[1])
        manifest = _manifest(source, settings, encoding, learned, self.parts, steps)
        atomic_write(self.staging / MANIFEST, json_bytes(manifest))
        if self.out.exists():
            self.out.rmdir()
        self.staging.rename(self.out)  # complete, or not there at all
        return manifest

    def _join(self, part: str, example: list[np.ndarray]) -> dict[str, Any]:
        """The part's pieces as one file per array, copied piece by piece."""
        pieces = self.pieces[part]
        rows = sum(len(np.load(self._file(p, "y"), mmap_mode="r")) for p in pieces)
        for array, like in zip(ARRAYS, example, strict=True):
            joined = np.lib.format.open_memmap(
                self._file(part, array), mode="w+", dtype=like.dtype, shape=(rows, *like.shape[1:])
            )
            start = 0
            for piece in pieces:
                values = np.load(self._file(piece, array), mmap_mode="r")
                joined[start : start + len(values)] = values
                start += len(values)
            joined.flush()
            del joined
        for piece in pieces:
            for array in ARRAYS:
                self._file(piece, array).unlink()
        return {"name": part, "rows": rows, "bytes": _bytes(self.staging, part)}

    def _file(self, name: str, array: str) -> Path:
        return _npy(self.staging, name, array)


def written(manifest: dict[str, Any]) -> str:
    """One line on what ``EncodedWriter`` wrote."""
    rows = {part: sum(p["rows"] for p in manifest[part]) for part in ("train", "val", "test")}
    return (
        f"{len(manifest['train'])} training shard(s), {rows['train']} training, {rows['val']} "
        f"validation and {rows['test']} test samples"
    )


def _npy(folder: Path, name: str, array: str) -> Path:
    """The file of one of a part's arrays (``ARRAYS``): ``train-00003.x.npy``, ``test.y.npy``."""
    return folder / f"{name}.{array}.npy"


def _joined(splits: list[Split]) -> Split:
    return Split(*(np.concatenate([getattr(s, a) for s in splits]) for a in ARRAYS))


def _write_part(folder: Path, name: str, split: Split) -> dict[str, Any]:
    for array in ARRAYS:
        with open(_npy(folder, name, array), "wb") as file:
            np.save(file, np.ascontiguousarray(getattr(split, array)))
    return {"name": name, "rows": len(split), "bytes": _bytes(folder, name)}


def _bytes(folder: Path, name: str) -> int:
    return sum(_npy(folder, name, array).stat().st_size for array in ARRAYS)


def _manifest(
    source: str,
    settings: Any,
    encoding: Encoding,
    learned: Learned,
    parts: dict[str, list],
    steps: int,
) -> dict[str, Any]:
    shape: dict[str, int] = {}
    vocabulary = learned.vocabulary
    if vocabulary is not None:  # text: the sizes that shaped the ids
        shape = {"vocab_size": min(encoding.vocab_size, len(vocabulary)), "max_len": steps}
        # (a smaller vocabulary than asked sizes the model, as ``prepare_data`` does)
    if learned.input_size is not None:
        shape["input_size"] = learned.input_size
    mean, std = learned.mean, learned.std
    return {
        "format": FORMAT,
        "source": source,
        "seed": encoding.seed,  # (the validation split's)
        "data": asdict(settings),
        "model": shape,
        "data_found": learned.found,
        "classes": list(learned.classes),
        "mean": None if mean is None else mean.tolist(),
        "std": None if std is None else std.tolist(),
        "steps": steps,
        **parts,
    }


def read_encoded(folder: Path, source: str) -> Splits:
    """The splits of a folder written by ``EncodedWriter`` for ``source``: training as
    ``Shards``, validation and test memory-mapped. The folder's settings (the data's, and the
    vocabulary size and length that shaped the arrays) replace the run's (``Learned.found``
    and ``Learned.shape``)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest["source"] != source:
        raise UserError(
            f"{folder} holds {manifest['source']} data: train it with "
            f"elman train {manifest['source']} --encoded {folder}"
        )
    like = None
    for part in manifest["train"] + manifest["val"] + manifest["test"]:
        if not all(_npy(folder, part["name"], a).is_file() for a in ARRAYS) or (
            _bytes(folder, part["name"]) != part["bytes"]
        ):
            raise UserError(
                f"{folder}: the files of {part['name']} are missing or changed since elman "
                "encode wrote them: encode the data again"
            )
        like = _checked_shapes(folder, part, manifest["steps"], like)
    check = _value_check(folder, manifest)
    train = Shards(
        folder,
        [part["name"] for part in manifest["train"]],
        [part["rows"] for part in manifest["train"]],
        manifest["steps"],
        check,
    )
    vocabulary = None
    if (folder / VOCABULARY).is_file():
        size = manifest["model"]["vocab_size"]
        vocabulary = read_vocabulary(folder / VOCABULARY, size, "encode the data again")
    statistics = [
        None if manifest[k] is None else np.array(manifest[k], np.float32) for k in ("mean", "std")
    ]
    val, test = _mapped_part(folder, "val"), _mapped_part(folder, "test")
    check("val", val)
    check("test", test)
    shape = manifest["model"]
    learned = Learned(
        manifest["classes"],
        vocabulary,
        *statistics,
        input_size=shape.get("input_size"),
        found={**manifest["data"], **manifest.get("data_found", {})},
        shape={k: v for k, v in shape.items() if k != "input_size"},
    )
    origin = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    return Splits(train, val, test, learned, origin)


# What a manifest may say: its parts' names (files inside the folder, never a path), the
# types of its fields, and the arrays' dtypes that elman encode writes.
_PART_NAMES = {
    "train": re.compile(r"train-\d{5}"),
    "val": re.compile("val"),
    "test": re.compile("test"),
}
_FIELDS = {"source": str, "steps": int, "classes": list, "model": dict, "data": dict}
_X_DTYPES = (np.dtype(np.int64), np.dtype(np.float32))  # token ids, or values
_Y_DTYPES = (np.dtype(np.float32), np.dtype(np.int64))  # two classes or targets, or classes


def _checked_manifest(path: Path, manifest: Any) -> dict[str, Any]:
    """The manifest's fields and part names, or one line on what is wrong with them."""
    problem = next(
        (f"{key!r} is missing or not a {kind.__name__}" for key, kind in _FIELDS.items()
         if not isinstance(manifest.get(key), kind)),
        None,
    )  # fmt: skip
    for kind, pattern in _PART_NAMES.items():
        parts = manifest.get(kind)
        if problem is None and (not isinstance(parts, list) or not parts):
            problem = f"{kind!r} lists no parts"
        for part in parts if problem is None else []:
            if not (
                isinstance(part, dict)
                and isinstance(part.get("name"), str)
                and pattern.fullmatch(part["name"])
                and isinstance(part.get("rows"), int)
                and part["rows"] >= 0
                and isinstance(part.get("bytes"), int)
            ):
                problem = f"its {kind} part {str(part)[:60]!r} is not one elman encode writes"
                break
    if problem is None and manifest["steps"] < 1:
        problem = f"steps is {manifest['steps']}"
    if problem:
        raise UserError(f"{path}: {problem}; encode the data again")
    vocab_size = manifest["model"].get("vocab_size")
    if (
        problem is None
        and vocab_size is not None
        and (not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 3)
    ):
        problem = f"the vocabulary size is {vocab_size!r}"
    if problem is None and not isinstance(manifest.get("data_found", {}), dict):
        problem = "'data_found' is not a dict"
    for key in ("mean", "std") if problem is None else ():
        values = manifest.get(key)
        if values is not None and not (
            isinstance(values, list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            problem = f"{key!r} is not a list of numbers"
    if problem is None and not all(isinstance(c, str) for c in manifest["classes"]):
        problem = "'classes' holds other things than names"
    if problem:
        raise UserError(f"{path}: {problem}; encode the data again")
    return manifest


def _checked_shapes(folder: Path, part: dict, steps: int, like: list | None) -> list:
    """A part's arrays as the manifest describes them (their headers alone are read): its row
    count in each, ``steps`` steps, dtypes elman writes, the same widths and dtypes as the
    parts before (``like``). Returns the part's arrays (memory-mapped) for the next one."""
    name = part["name"]
    try:
        arrays = [np.load(_npy(folder, name, a), mmap_mode="r") for a in ARRAYS]
    except (ValueError, OSError) as error:
        raise UserError(
            f"{folder}: {name} is not readable ({error}): encode the data again"
        ) from None
    x, y, lengths = arrays
    problem = None
    if {len(x), len(y), len(lengths)} != {part["rows"]}:
        problem = (
            f"has {len(x)}, {len(y)} and {len(lengths)} rows where the manifest says {part['rows']}"
        )
    elif x.ndim not in (2, 3) or x.shape[1] != steps or x.dtype not in _X_DTYPES:
        problem = f"holds inputs of shape {x.shape} and type {x.dtype}"
    elif y.dtype not in _Y_DTYPES or lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        problem = f"holds labels of type {y.dtype} and lengths of type {lengths.dtype}"
    elif like is not None and any(
        a.shape[1:] != b.shape[1:] or a.dtype != b.dtype for a, b in zip(arrays, like, strict=True)
    ):
        problem = "differs in shape or type from the parts before it"
    if problem:
        raise UserError(f"{folder}: {name} {problem}: encode the data again")
    return arrays


def _value_check(folder: Path, manifest: dict[str, Any]) -> Callable[[str, Split], None]:
    """A check of a part's values once read: token ids within the vocabulary, class labels
    within the classes, lengths within the steps (what the kernels and the loss index with)."""
    vocab_size = manifest["model"].get("vocab_size")
    classes, steps = len(manifest["classes"]), manifest["steps"]

    def check(name: str, split: Split) -> None:
        problem = None
        if len(split) and (split.lengths.min() < 0 or split.lengths.max() > steps):
            problem = f"lengths outside 0..{steps}"
        elif (
            split.x.dtype == np.int64
            and split.x.size
            and vocab_size is not None
            and (split.x.min() < 0 or split.x.max() >= vocab_size)
        ):
            problem = f"token ids outside the vocabulary of {vocab_size}"
        elif classes and split.y.ndim != 1:
            problem = f"labels of shape {split.y.shape}"
        elif (
            classes
            and len(split)
            and (
                split.y.min() < 0
                or split.y.max() >= classes
                or not np.all(split.y == np.floor(split.y))
            )
        ):
            problem = f"labels that are not class numbers 0..{classes - 1}"
        if problem:
            raise UserError(f"{folder}: {name} holds {problem}: encode the data again")

    return check


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(
            f"`encoded` {folder} holds no {MANIFEST}: give a folder written by elman encode"
        )
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}): encode the data again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} was not written by this elman's encode: encode the data again")
    return _checked_manifest(path, manifest)


def _mapped_part(folder: Path, name: str) -> Split:
    """A validation or test part: inputs memory-mapped (read in order by evaluation, so its
    size is bounded by the disk, not memory), labels and lengths in memory."""
    x = np.load(_npy(folder, name, "x"), mmap_mode="c")
    y, lengths = (np.load(_npy(folder, name, a)) for a in ("y", "lengths"))
    return Split(x, y, lengths)
