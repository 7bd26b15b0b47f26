"""The one interface every data source implements, and what passes through it.

A source (``imdb``, ``text``, ``series``, ``speech``) is a ``Source``: its data configuration,
the network that reads it, its preset, and three functions:

- ``read(settings, encoding, log) -> Splits``: the training, validation and test arrays from the
  source's own ``settings`` and the ``Encoding`` (vocabulary size, length, task, seed), and what
  the source learned from the training data (``Learned``: classes, vocabulary, scaling);
- ``evaluation(fitted, path, log) -> Split``: labelled samples to evaluate a saved model on
  (``path`` in the training format, or ``None`` for the split it was tested on);
- ``inputs(fitted, given, log) -> Inputs``: what a user gave to predict, encoded as the model
  reads it.

``Fitted`` is what a source needs of a trained model: its settings, encoding and what it
learned. A source knows nothing of the run's configuration, the model or the trainer.

``elman.data.SOURCES`` lists them by name. Adding a source is one module that defines its
``SOURCE`` plus one line there; nothing else switches on a source's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from elman.data.split import Split
from elman.data.text import Vocabulary
from elman.errors import UserError

Log = Callable[[str], None]


class Writer(Protocol):
    """Where ``Source.stream`` puts encoded rows (``elman.data.shards.EncodedWriter``)."""

    shard_size: int

    def add(self, part: str, rows: Split) -> None: ...


@dataclass(frozen=True)
class Encoding:
    """The run's settings that shape a source's arrays besides the source's own."""

    vocab_size: int = 10_000  # text: ids kept, the reserved ones included
    max_len: int = 500  # text: words per text (longer ones keep their end)
    task: str = "classify"  # numbers: classify whole series or forecast each next value
    seed: int = 0  # the held-out splits' seed


@dataclass
class Learned:
    """What a source learned from the training data, which a model trained on it keeps."""

    classes: list[str]  # class names in the order of the model's outputs (empty: forecast)
    vocabulary: Vocabulary | None = None  # text sources
    mean: np.ndarray | None = None  # numeric sources: the training split's statistics (F,)
    std: np.ndarray | None = None
    input_size: int | None = None  # numeric sources: values per step
    found: dict[str, Any] = field(default_factory=dict)  # source settings the data decided
    # (speech: the sample rate; an encoded folder: all of them)
    shape: dict[str, int] = field(default_factory=dict)  # an encoded folder's vocab_size and
    # max_len, which made its arrays


@dataclass
class Splits:
    """A source's arrays for one run, and what it learned from the training split."""

    train: Any  # a Split, or Shards (elman.data.shards) streamed from elman encode's folder
    val: Split
    test: Split
    learned: Learned
    origin: str | None = None  # data read from elman encode's folder: its manifest's checksum


@dataclass(frozen=True)
class Fitted:
    """What a source needs of a trained model to read new data as it read its training data:
    the source's settings, the encoding, and what it learned."""

    settings: Any
    encoding: Encoding
    learned: Learned


@dataclass
class Given:
    """What a user gave to predict: texts (``-``: standard input) or paths, files, folders."""

    texts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)


@dataclass
class Inputs:
    """Samples to predict, encoded as the model reads them (``x``), where each came from, and
    what to print beside its prediction."""

    x: np.ndarray
    where: list[str]
    shown: list[str]


@dataclass(frozen=True)
class Source:
    name: str
    config: type  # the data configuration dataclass
    network: str  # "words": token ids -> ReviewClassifier; "numbers": values -> SequenceModel
    read: Callable[[Any, Encoding, Log], Splits]
    evaluation: Callable[[Fitted, Path | None, Log], Split]
    inputs: Callable[[Fitted, Given, Log], Inputs]
    classes: tuple[str, ...] = ()  # the class names it always has (else the data says)
    preset: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"model"|"train": {...}}
    fixed: dict[str, Any] = field(default_factory=dict)  # model settings it fixes (no option)
    # Named recipes beyond the reference one (``--preset NAME``): {"model"|"data"|"train": {...}}
    recipes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    recipe_help: dict[str, str] = field(default_factory=dict)  # a line per recipe, and reference
    # elman serve: a few test samples to show ({"text", "label"}), and for sources read from
    # files, a request body (the file's bytes) -> the rows the model reads
    examples: Callable[[Fitted, int], list[dict]] | None = None
    upload: Callable[[Fitted, bytes], np.ndarray] | None = None
    # elman encode, a piece at a time (data larger than memory): the run's rows into the
    # writer (``EncodedWriter.add``), returning what it learned; None: this data is read
    # whole instead
    stream: Callable[[Any, Encoding, Writer, Log], Learned | None] | None = None
    help: str = ""  # one line for ``elman train --help``
    description: str = ""  # a paragraph for ``elman train SOURCE --help``


def given_paths(given: Given, suffix: str, what: str) -> list[Path]:
    """The paths among ``given`` (arguments and --file), and the ``suffix`` files of its
    folders, in order."""
    paths = [Path(text) for text in given.texts] + list(given.files)
    for folder in given.folders:
        found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
        if not found:
            raise UserError(f"`folder` {folder} holds no {suffix} files")
        paths.extend(found)
    if not paths:
        raise UserError(f"nothing to predict: give {what}")
    return paths
