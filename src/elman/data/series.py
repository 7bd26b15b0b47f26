"""Numeric sequences (time series): UCR/UEA text files, CSV, NumPy arrays -> arrays for training.

Path of the data, top to bottom:
1. ``read_series``: values and labels from a file. Text files hold one series a line, the label
   first, then the values, separated by tabs, commas or spaces (the UCR archive's format; a CSV
   with a header row names its label column). ``NaN``, ``?`` and empty fields are missing values;
   rows of unequal length are series of unequal length. ``.npz`` holds ``x`` (N, T) or (N, T, F)
   and ``y`` (N,); a ``.npy`` of values takes its labels from ``--labels``.
2. ``load_series``: train/test from ``X_TRAIN``/``X_TEST`` files, ``--test`` or a seeded split;
   a seeded validation split; statistics of the training split for standardisation (applied in
   the model, see ``SequenceModel``); for ``task="forecast"`` the next-step targets.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from elman.data.source import (
    Encoding,
    Fitted,
    Given,
    Inputs,
    Learned,
    Log,
    Source,
    Splits,
    given_paths,
)
from elman.data.split import Split, class_names, encode_labels, split_rows
from elman.data.text import read_text
from elman.errors import UserError
from elman.settings import setting

MISSING = {"", "nan", "NaN", "NAN", "?", "NA", "null"}


@dataclass
class SeriesConfig:
    data: str = setting(
        "", "a UCR X_TRAIN file (X_TEST beside it is the test set) or its folder, CSV, .npz or .npy"
    )
    test: str | None = setting(
        None, "test data in the same format (none: X_TEST beside X_TRAIN, else a seeded split)"
    )
    labels: str | None = setting(None, "labels (.npy) for a .npy of values")
    label_column: str = setting(
        "",
        "text files: the label's header name or index from 0 ('': a column named "
        "label/class/target/y, else the first)",
    )
    no_labels: bool = setting(False, "the files hold values only (forecasting)")
    max_len: int | None = setting(None, "keep the last N steps of each series (none: all)")
    val_size: float = setting(
        0.2, "training samples held out for validation: a fraction < 1 or a count"
    )
    test_size: float = setting(
        0.2, "without test data, samples held out for testing: a fraction < 1 or a count"
    )


@dataclass
class Raw:
    """Series as read: values (N, T, F) float32 with NaN, labels as strings (or None)."""

    values: np.ndarray
    labels: list[str] | None
    where: list[str] = field(default_factory=list)

    def take(self, rows) -> Raw:
        labels = None if self.labels is None else [self.labels[i] for i in rows]
        return Raw(self.values[rows], labels, [self.where[i] for i in rows])


def pad_with_nan(rows: list[np.ndarray]) -> np.ndarray:
    """Sequences (T_i, F) of unequal length -> (N, max T_i, F), NaN after each one's end."""
    steps = max(len(row) for row in rows)
    padded = np.full((len(rows), steps, rows[0].shape[1]), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return padded


def _label_text(token: str) -> str:
    """ "2.0000000e+00" (old UCR files) -> "2"; other labels stay as written."""
    try:
        number = float(token)
    except ValueError:
        return token.strip()
    return str(int(number)) if math.isfinite(number) and number == int(number) else token.strip()


def _number(token: str, where: str) -> float:
    token = token.strip()
    if token in MISSING:
        return math.nan
    try:
        value = float(token)
    except ValueError:
        raise UserError(
            f"{where}: {token!r} is not a number; series values must be numbers "
            "(NaN, ? or an empty field for a missing value)"
        ) from None
    if not abs(value) <= FLOAT32_MAX:
        raise UserError(f"{where}: {token!r} is {_too_large(value)}: {FINITE_ONLY}")
    return value


# inf (or a value beyond float32) is refused rather than taken as missing: it is more often a
# broken export than a gap, and as a value it would make every statistic and loss NaN.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FINITE_ONLY = "series values must be finite float32 numbers (NaN, ? or empty for a missing one)"


def _too_large(value: float) -> str:
    return "infinite" if math.isinf(value) else "beyond float32's range"


def _check_finite(values: np.ndarray, path: Path) -> None:
    """Refuse infinite values (and values that overflow float32) of a NumPy array, naming the
    first one's series, step and feature."""
    with np.errstate(over="ignore"):
        bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > FLOAT32_MAX)
    if bad.any():
        series, step, feature = (int(i) + 1 for i in np.argwhere(bad)[0])
        value = float(values[series - 1, step - 1, feature - 1])
        raise UserError(
            f"{path} series {series} step {step} feature {feature}: {value} is "
            f"{_too_large(value)}: {FINITE_ONLY}"
        )


def _read_text_table(path: Path, config: SeriesConfig) -> Raw:
    text, _ = read_text(path.read_bytes())
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserError(f"{path} holds no series")
    first = lines[0][1]
    delimiter = "\t" if "\t" in first else "," if "," in first else None
    split = (lambda line: _fields(line, delimiter, path)) if delimiter else str.split
    header = split(first)
    # A header row is mostly names; a data row is mostly numbers (a text label at most).
    has_header = sum(_is_text(token) for token in header) > len(header) / 2
    column = (
        None if config.no_labels else _label_index(config.label_column, header, has_header, path)
    )
    rows, labels, where = [], [], []
    for number, line in lines[1:] if has_header else lines:
        fields = split(line)
        place = f"{path} line {number}"
        if column is not None:
            if column >= len(fields):
                raise UserError(
                    f"{place} has no label column {column}: it has {len(fields)} fields"
                )
            labels.append(_label_text(fields.pop(column)))
        shift = 0 if column is None else 1  # (fields are counted as in the file)
        values = [
            _number(
                token,
                f"{place} field {i + 1 + (shift if column is not None and i >= column else 0)}",
            )
            for i, token in enumerate(fields)
        ]
        while values and math.isnan(values[-1]):  # trailing blanks pad unequal lengths
            values.pop()
        if not values:
            raise UserError(f"{place} has no values: give every series at least one")
        rows.append(np.array(values, dtype=np.float32)[:, None])
        where.append(place)
    return Raw(pad_with_nan(rows), None if column is None else labels, where)


def _fields(line: str, delimiter: str, path: Path) -> list[str]:
    """One CSV/TSV line's fields, quotes as the csv module reads them ("1.5" is 1.5)."""
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error as error:
        raise UserError(f"{path}: the line {line[:40]!r} is not valid CSV ({error})") from None


def _is_text(token: str) -> bool:
    try:
        float(token)
        return False
    except ValueError:
        return token.strip() not in MISSING


LABEL_NAMES = ("label", "class", "target", "y")


def _label_index(column: str, header: list[str], has_header: bool, path: Path) -> int:
    if not column:
        names = [name.strip().lower() for name in header] if has_header else []
        return next((names.index(n) for n in LABEL_NAMES if n in names), 0)
    if has_header and column in header:
        return header.index(column)
    if column.isdigit():
        return int(column)
    raise UserError(
        f"{path} has no column {column!r}"
        + (f" (its columns: {', '.join(header[:8])}…)" if has_header else "")
        + "; name the label's column with `label_column` (a header name or an index from 0)"
    )


def _as_steps(values: np.ndarray, path: Path) -> np.ndarray:
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or not np.issubdtype(values.dtype, np.number):
        raise UserError(
            f"{path}: expected numbers shaped (N, T) or (N, T, F), got {values.dtype} "
            f"{values.shape}"
        )
    _check_finite(values.astype(np.float64), path)
    return values.astype(np.float32)


def _read_arrays(path: Path, config: SeriesConfig) -> Raw:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} as a NumPy file ({error})") from None
    if isinstance(loaded, np.ndarray):
        values, labels = loaded, None
        if config.labels:
            labels = np.load(config.labels, allow_pickle=False)
    else:
        keys = {key.lower(): key for key in loaded.files}
        if "x" not in keys:
            raise UserError(f"{path} has no array 'x' (it has {', '.join(loaded.files)})")
        values = loaded[keys["x"]]
        labels = loaded[keys["y"]] if "y" in keys else None
    values = _as_steps(values, path)
    if labels is not None and len(labels) != len(values):
        raise UserError(f"{path}: {len(values)} series but {len(labels)} labels")
    where = [f"{path} series {i + 1}" for i in range(len(values))]
    names = None if labels is None else [_label_text(str(label)) for label in labels.tolist()]
    return Raw(values, names, where)


def read_series(path: Path, config: SeriesConfig) -> Raw:
    if not path.is_file():
        raise UserError(f"series data not found at {path}: give a UCR/CSV text file or .npz/.npy")
    if path.suffix.lower() in (".npz", ".npy"):
        return _read_arrays(path, config)
    return _read_text_table(path, config)


def _ucr_test_file(path: Path) -> Path | None:
    """``X_TRAIN.tsv`` -> ``X_TEST.tsv`` beside it, if it exists."""
    if re.search(r"_TRAIN(\.\w+)?$", path.name):
        test = path.with_name(re.sub(r"_TRAIN(\.\w+)?$", r"_TEST\1", path.name))
        return test if test.is_file() else None
    return None


def _resolve(data: str) -> Path:
    """A folder holding ``X_TRAIN.*`` means that file."""
    path = Path(data)
    if path.is_dir():
        found = sorted(path.glob("*_TRAIN*"))
        if not found:
            raise UserError(f"{path} holds no *_TRAIN file: give the training file itself")
        return found[0]
    return path


# Arrays for training -----------------------------------------------------------------------


@dataclass
class NumericData:
    """Splits of values (N, T, F) (see ``elman.data.split``), the class names (empty when
    forecasting) and the training split's per-feature mean and std (F,)."""

    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray


def statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (F,) over every value present; a constant feature gets std 1."""
    flat = values.reshape(-1, values.shape[-1])
    mean = np.nanmean(flat, axis=0)
    std = np.nanstd(flat, axis=0)
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def present_steps(values: np.ndarray) -> np.ndarray:
    return (~np.isnan(values).any(-1)).sum(1)


def forecast_pairs(
    values: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, T-1, F) and standardised next-step targets (N, T-1, F) from series with gaps:
    the present values of each series, in order, predict the next present value."""
    present = ~np.isnan(values).any(-1)
    moved = np.full_like(values, np.nan)
    for i in range(len(values)):
        kept = values[i][present[i]]
        moved[i, : len(kept)] = kept
    return moved[:, :-1], (moved[:, 1:] - mean) / std


def forecast_split(raw: Raw, mean: np.ndarray, std: np.ndarray) -> Split:
    """Inputs and standardised next-step targets (see ``forecast_pairs``) as a Split."""
    x, y = forecast_pairs(raw.values, mean, std)
    return Split(x, y, present_steps(x))


def labelled_split(raw: Raw, names: list[str]) -> Split:
    """Values and label indices of ``names`` (an unknown label is refused, naming its line)."""
    return Split(raw.values, encode_labels(raw.labels, names, raw.where), present_steps(raw.values))


def numeric_splits(
    train: Raw, test: Raw, task: str, val_size: float, seed: int, names: list[str] | None = None
) -> NumericData:
    """Seeded validation split, training statistics, labels or forecast targets for each split."""
    minimum = 2 if task == "forecast" else 1
    for raw in (train, test):
        counts = present_steps(raw.values)
        if (counts < minimum).any():
            place = raw.where[int(np.argmax(counts < minimum))]
            raise UserError(
                f"{place} has fewer than {minimum} values present: nothing to learn from"
            )
    # The classes of all the training data: a class whose few series all fall in the
    # validation split is still one the model must know (PigCVP: 2 series a class).
    all_labels = train.labels
    kept, held = split_rows(len(train.values), val_size, seed, "val-size", least=0)
    train, val = train.take(kept), train.take(held)
    mean, std = statistics(train.values)
    if task == "forecast":
        return NumericData(
            *(forecast_split(raw, mean, std) for raw in (train, val, test)), [], mean, std
        )
    if train.labels is None or test.labels is None:
        raise UserError(
            f"{(train if train.labels is None else test).where[0].rsplit(' ', 2)[0]} has no "
            "labels: classification needs them (a label column; 'y' in a .npz; `labels` for a "
            ".npy), or use `task` forecast"
        )
    names = names or class_names(all_labels)
    if len(names) < 2:
        raise UserError(
            f"the training data has only the label {names[0]!r}: a classifier needs two"
        )
    splits = [labelled_split(raw, names) for raw in (train, val, test)]
    return NumericData(*splits, list(names), mean, std)


def cut(raw: Raw, max_len: int | None) -> Raw:
    """Keep each series' last ``max_len`` steps (as text keeps a review's last words)."""
    if max_len is None or raw.values.shape[1] <= max_len:
        return raw
    rows = []
    for values in raw.values:
        present_until = int(np.flatnonzero(~np.isnan(values).all(-1)).max()) + 1
        rows.append(values[max(0, present_until - max_len) : present_until])
    return Raw(pad_with_nan(rows), raw.labels, raw.where)


def load_series(config: SeriesConfig, *, task: str, seed: int) -> NumericData:
    """Train/validation/test splits for ``task`` ("classify" or "forecast"), held-out splits
    ``seed``-ed."""
    if not config.data:
        raise UserError("no series data: give `data` PATH (a UCR/CSV text file or .npz/.npy)")
    path = _resolve(config.data)
    train = cut(read_series(path, config), config.max_len)
    test_path = Path(config.test) if config.test else _ucr_test_file(path)
    if test_path is not None:
        test = cut(read_series(test_path, config), config.max_len)
        if test.values.shape[2] != train.values.shape[2]:
            raise UserError(
                f"{test_path} has {test.values.shape[2]} values per step but {path} has "
                f"{train.values.shape[2]}"
            )
    else:
        kept, held = split_rows(len(train.values), config.test_size, seed, "test-size")
        train, test = train.take(np.sort(kept)), train.take(np.sort(held))
    return numeric_splits(train, test, task, config.val_size, seed)


# The source: what elman train/evaluate/predict call --------------------------------------------


def splits_of(numbers: NumericData, **found: object) -> Splits:
    """A numeric source's Splits: the model's input width and statistics come from the data
    (``found``: source settings the data decided)."""
    learned = Learned(
        numbers.classes,
        mean=numbers.mean,
        std=numbers.std,
        input_size=numbers.train.x.shape[2],
        found=found,
    )
    return Splits(numbers.train, numbers.val, numbers.test, learned)


def read(settings: SeriesConfig, encoding: Encoding, log: Log = print) -> Splits:
    return splits_of(load_series(settings, task=encoding.task, seed=encoding.seed))


def evaluation(fitted: Fitted, path: Path | None, log: Log = print) -> Split:
    """Every series of ``path`` (in the training format) with its label or next-step targets,
    or the run's own test split."""
    settings, learned = fitted.settings, fitted.learned
    if path is None:
        return read(settings, fitted.encoding, log).test
    raw = cut(read_series(path, settings), settings.max_len)
    if fitted.encoding.task == "forecast":
        return forecast_split(raw, learned.mean, learned.std)
    if raw.labels is None:
        raise UserError(f"{path} has no labels to evaluate against")
    return labelled_split(raw, learned.classes)


def inputs(fitted: Fitted, given: Given, log: Log = print) -> Inputs:
    """Each file in the training format: one sample per series. Labels, where a file has them,
    are checked against the model's classes and shown beside the prediction."""
    data = replace(fitted.settings, labels=None)  # a .npy of values is read without its labels
    raws = [
        cut(read_series(path, data), data.max_len)
        for path in given_paths(given, "", "series files in the training format")
    ]
    where, shown = [], []
    for raw in raws:
        if raw.labels is not None and fitted.encoding.task != "forecast":
            encode_labels(raw.labels, fitted.learned.classes, raw.where)  # unknown: an error
        where += raw.where
        shown += [
            place + (f" (labelled {raw.labels[i]})" if raw.labels is not None else "")
            for i, place in enumerate(raw.where)
        ]
    return Inputs(pad_with_nan([row for raw in raws for row in raw.values]), where, shown)


SOURCE = Source(
    name="series",
    config=SeriesConfig,
    network="numbers",
    read=read,
    evaluation=evaluation,
    inputs=inputs,
    # the echo-state network: the best recipe on the development suite (README, "How recipes
    # are chosen"); --model rnn trains the simple RNN by gradient descent, 200 epochs at most
    preset={"model": {"architecture": "esn"}, "train": {"epochs": 200, "patience": 20}},
    recipes={"best": {}},
    recipe_help={
        "reference": "the echo-state network (--model esn)",
        "best": "the same: no candidate beat the defaults on the suite's series",
    },
    help="numeric sequences: UCR/UEA text files, CSV, .npy/.npz",
    description="Classify (or forecast) series. Text files hold one series a line, label first "
    "(UCR); X_TRAIN files find their X_TEST beside them. NaN, ? or empty fields are missing "
    "values; rows may differ in length. Values are standardised with the training split's "
    "statistics, kept in the saved model.",
)
