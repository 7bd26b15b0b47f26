"""A run's settings put together from the registries (the data sources', ``elman.data``, and
the cells', ``elman.cells``): a new run's defaults (``preset``), a saved run's settings read
back (``load_config``), and the ``Encoding`` a source reads with (``encoding_of``).

``elman.config`` declares the settings and knows no source; the sources know no settings but
their own. This module is where the two meet.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import elman.cells as cells
from elman.config import (
    CONFIG,
    ModelConfig,
    RunConfig,
    SequenceConfig,
    TrainConfig,
    check_class_names,
)
from elman.data import SOURCES
from elman.data.imdb import LABELS
from elman.data.source import Encoding, Source
from elman.errors import UserError
from elman.settings import json_text, typed

NETWORKS = {"words": ModelConfig, "numbers": SequenceConfig}  # a Source's network -> its config


def source_of(name: str) -> Source:
    if name not in SOURCES:
        raise UserError(f"unknown source {name!r}: choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def preset(
    source: str = "imdb", architecture: str | None = None, recipe: str = "reference"
) -> RunConfig:
    """A run's defaults: the dataclasses', then the source's preset, then the named ``recipe``
    of the source (``reference``: none), then the architecture's (its kind of cell's). The
    architecture: ``architecture``, else the recipe's, else the source's, else the reference
    model's (``cells.DEFAULT_CELL``)."""
    kind = source_of(source)
    if recipe != "reference" and recipe not in kind.recipes:
        names = ", ".join(["reference", *kind.recipes])
        raise UserError(f"{source} has no preset {recipe!r}: choose one of {names}")
    chosen = kind.recipes.get(recipe, {})
    architecture = architecture or next(
        (
            part["model"]["architecture"]
            for part in (chosen, kind.preset)
            if "architecture" in part.get("model", {})
        ),
        cells.DEFAULT_CELL,
    )
    cell = cells.kind_of(architecture, texts=kind.network == "words")
    overrides: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    for extra in (kind.preset, chosen, cell.preset, {"model": {**kind.fixed}}):
        for part, values in extra.items():
            overrides[part].update(values)
    # A source's or recipe's way of reading that this kind of cell has not (the text defaults
    # read both ways and pool; the shallow model has no RNN to do either) does not apply.
    unable = {"bidirectional": not cell.bidirectional, "pooling": not cell.pools}
    for name, drop in unable.items():
        if drop and name not in cell.preset.get("model", {}):
            overrides["model"].pop(name, None)
    overrides["model"]["architecture"] = architecture
    return RunConfig(
        model=NETWORKS[kind.network](**overrides["model"]),
        data=kind.config(**overrides["data"]),
        train=TrainConfig(**overrides["train"]),
        source=source,
        classes=list(kind.classes),
    )


def encoding_of(config: RunConfig) -> Encoding:
    """What shapes the source's arrays beyond its own settings: the text model's vocabulary
    size and length, the numeric model's task, and the seed."""
    model = config.model
    defaults = Encoding()
    return Encoding(
        vocab_size=getattr(model, "vocab_size", defaults.vocab_size),
        max_len=getattr(model, "max_len", defaults.max_len),
        task=getattr(model, "task", defaults.task),
        seed=config.train.seed,
    )


# Fields that config.json files of elman 0.1's first releases held twice (now stored once).
_OLD_COPIES = {"model": ("classes",), "data": ("vocab_size", "max_len", "seed", "task")}


def _part(saved: dict, part: str, cls: type, where: str) -> Any:
    """One part of config.json as its dataclass, each value checked against its declared type
    (the copies old files held dropped; a part saved as null: its defaults)."""
    values = saved.get(part, {})
    if values is None:
        values = {}
    if isinstance(values, dict):
        values = {k: v for k, v in values.items() if k not in _OLD_COPIES.get(part, ())}
    return typed(cls, values, f"{where} {part}")


def load_config(folder: Path) -> RunConfig:
    """``config.json`` of a saved model, every part and value checked: a file elman did not
    write, or one edited into something that does not fit, is refused with one line."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise UserError(f"{folder} is not a saved elman model: {CONFIG} is missing")
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}): train the model again") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} must hold a JSON object of settings, got {type(saved).__name__}")
    if "kind" in saved:
        raise UserError(f"{folder} holds a {saved['kind']}, not a classifier: use elman lm next")
    if saved.get("source", "imdb") not in SOURCES:
        raise UserError(f"{path}: unknown source {json_text(saved.get('source'))}")
    kind = SOURCES[saved.get("source", "imdb")]
    config = RunConfig(
        model=_part(saved, "model", NETWORKS[kind.network], path.name),
        data=_part(saved, "data", kind.config, path.name),
        train=_part(saved, "train", TrainConfig, path.name),
        source=kind.name,
        classes=saved.get("classes", list(LABELS)),
    )
    old_task = (saved.get("data") or {}).get("task")
    if old_task and kind.network == "numbers":  # (files of 0.1's first releases kept it there)
        config = replace(config, model=replace(config.model, task=old_task))
    check_class_names(config, path.name)
    return config
