"""The one interface every data source implements, and what passes through it.

A source (``imdb``, ``text``, ``series``, ``speech``) is a ``Source``: its data configuration,
the network that reads it, its preset, and three functions:

- ``read(run, log) -> Splits``: the training, validation and test arrays for a run;
- ``evaluation(trained, path, log) -> Split``: labelled samples to evaluate a saved model on
  (``path`` in the training format, or ``None`` for the split it was tested on);
- ``inputs(trained, given, log) -> Inputs``: what a user gave to predict, encoded as the model
  reads it.

``elman.data.SOURCES`` lists them by name. Adding a source is one module that defines its
``SOURCE`` plus one line there; nothing else switches on a source's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elman.data.split import Split
from elman.data.text import Vocabulary
from elman.errors import UserError

if TYPE_CHECKING:  # (types only: data/ never imports the layers above it)
    from elman.config import RunConfig
    from elman.data.shards import EncodedWriter, Shards
    from elman.inference import TrainedClassifier, TrainedSequenceModel

    Trained = TrainedClassifier | TrainedSequenceModel

Log = Callable[[str], None]


@dataclass
class Splits:
    """A source's arrays for one run, and what the data says about the run's settings."""

    train: Split | Shards  # Shards: streamed from elman encode's folder
    val: Split
    test: Split
    classes: list[str]  # class names in the order of the model's outputs (empty: forecast)
    vocabulary: Vocabulary | None = None  # text sources
    mean: np.ndarray | None = None  # numeric sources: the training split's statistics (F,)
    std: np.ndarray | None = None
    model: dict[str, Any] = field(default_factory=dict)  # settings the data fixes (input_size)
    data: dict[str, Any] = field(default_factory=dict)  # ... and of the data config (sample_rate)
    origin: str | None = None  # data read from elman encode's folder: its manifest's checksum


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
    read: Callable[[RunConfig, Log], Splits]
    evaluation: Callable[[Trained, Path | None, Log], Split]
    inputs: Callable[[Trained, Given, Log], Inputs]
    preset: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"model"|"train": {...}}
    fixed: dict[str, Any] = field(default_factory=dict)  # model settings it fixes (no option)
    # Named recipes beyond the reference one (``--preset NAME``): {"model"|"data"|"train": {...}}
    recipes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    recipe_help: dict[str, str] = field(default_factory=dict)  # a line per recipe, and reference
    # elman serve: a few test samples to show ({"text", "label"}), and for sources read from
    # files, a request body (the file's bytes) -> the rows the model reads
    examples: Callable[[Trained, int], list[dict]] | None = None
    upload: Callable[[Trained, bytes], np.ndarray] | None = None
    # elman encode, a piece at a time (data larger than memory): the run's rows into the
    # writer (``EncodedWriter.add``), returning ``classes`` and what else the data says
    # (``EncodedWriter.finish``'s arguments); None: this data is read whole instead
    stream: Callable[[RunConfig, EncodedWriter, Log], dict | None] | None = None
    help: str = ""  # one line for ``elman train --help``
    description: str = ""  # a paragraph for ``elman train SOURCE --help``


def given_paths(given: Given, suffix: str, what: str) -> list[Path]:
    """The paths among ``given`` (arguments and --file), and the ``suffix`` files of its
    folders, in order."""
    paths = [Path(text) for text in given.texts] + list(given.files)
    for folder in given.folders:
        found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
        if not found:
            raise UserError(f"--folder {folder} holds no {suffix} files")
        paths.extend(found)
    if not paths:
        raise UserError(f"nothing to predict: give {what}")
    return paths
