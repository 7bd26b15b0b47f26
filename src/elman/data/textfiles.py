"""The user's own labelled texts: a CSV/TSV, JSON Lines, or a folder with one subfolder per class.

Path of the data, top to bottom:
1. ``read_labelled``: (text, label, where) for every sample of a file or folder; ``where`` names
   the line or file, for error messages. A folder (or a .tar.gz of one) holds one subfolder of
   .txt files per class, or ``train/`` and ``test/`` folders that each do (the aclImdb layout).
2. ``load_texts``: train/validation/test from the given files or a seeded split, the vocabulary
   ranked over the training texts, ids padded/cut exactly as for IMDB (``elman.data.imdb``), so
   the aclImdb folder through this path gives the same arrays as ``elman train imdb``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from elman.data.split import Split, class_names, encode_labels, files_in, natural_key, split_rows
from elman.data.text import Vocabulary, pad_sequences, rank_words, read_text, tokenize
from elman.errors import UserError


@dataclass
class TextConfig:
    """Where the texts are and how to turn them into arrays (defaults as for IMDB)."""

    data: str = ""  # CSV/TSV/JSONL file, or folder (or .tar.gz) of class folders
    test: str | None = None  # test file/folder; else the folder's test/, else a seeded split
    val: str | None = None  # validation file/folder; else a seeded split of the training data
    text_column: str = "text"  # CSV/TSV header name, or JSON key
    label_column: str = "label"
    classes: list[str] | None = None  # class folders to read, in label order (default: all)
    vocab_size: int = 10_000
    max_len: int = 500
    padding: str = "pre"
    truncating: str = "pre"
    val_size: float = 0.2  # a fraction (< 1) or a count of the training samples
    test_size: float = 0.2  # of all samples, when no test data is given
    seed: int = 0


@dataclass
class Labelled:
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # "file.csv line 3", "pos/12_8.txt"

    def add(self, text: str, label: str, where: str) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.where.append(where)

    def take(self, rows) -> Labelled:
        return Labelled(
            [self.texts[i] for i in rows],
            [self.labels[i] for i in rows],
            [self.where[i] for i in rows],
        )


# 1. Reading --------------------------------------------------------------------------------


def _decode(data: bytes, where: str, invalid: list[str]) -> str:
    text, valid = read_text(data)
    if not valid:
        invalid.append(where)
    return text


def _read_table(path: Path, config: TextConfig, invalid: list[str], with_labels: bool) -> Labelled:
    """A CSV (comma) or TSV (tab) file with a header row naming the text and label columns
    (without ``with_labels``, the label column is read only if there is one)."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows = csv.reader(
        io.StringIO(_decode(path.read_bytes(), str(path), invalid), newline=""), delimiter=delimiter
    )
    header = next(rows, None)
    if not header:
        raise UserError(f"{path} is empty: give a header row and one sample per row")
    columns = []
    for name, option in (
        (config.text_column, "--text-column"),
        (config.label_column, "--label-column"),
    ):
        if name in header:
            columns.append(header.index(name))
        elif option == "--label-column" and not with_labels:
            columns.append(None)
        else:
            raise UserError(
                f"{path} has no column {name!r} (its columns: {', '.join(header)}); "
                f"name the right one with {option}"
            )
    found = Labelled()
    for row in rows:
        line = rows.line_num
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(
                f"{path} line {line} has {len(row)} fields but the header has {len(header)}; "
                "quote texts that contain the delimiter"
            )
        label = "" if columns[1] is None else row[columns[1]].strip()
        found.add(row[columns[0]], label, f"{path} line {line}")
    return found


def _read_json_lines(
    path: Path, config: TextConfig, invalid: list[str], with_labels: bool
) -> Labelled:
    """One JSON object per line with the text and label keys (the label optional without
    ``with_labels``)."""
    found = Labelled()
    lines = _decode(path.read_bytes(), str(path), invalid).splitlines()
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {line_number} is not valid JSON ({error.msg})") from None
        for key, option in (
            (config.text_column, "--text-column"),
            (config.label_column, "--label-column"),
        ):
            optional = option == "--label-column" and not with_labels
            if not isinstance(record, dict) or (key not in record and not optional):
                raise UserError(
                    f"{path} line {line_number} has no key {key!r}; name the right one with "
                    f"{option}"
                )
        label = str(record.get(config.label_column, "")).strip()
        found.add(str(record[config.text_column]), label, f"{path} line {line_number}")
    return found


def _class_folders(
    files: dict[PurePosixPath, bytes], root: PurePosixPath
) -> dict[str, list[PurePosixPath]]:
    """Class name -> its .txt files, for the subfolders directly under ``root``."""
    classes: dict[str, list[PurePosixPath]] = {}
    for name in files:
        if name.parent.parent == root:
            classes.setdefault(name.parent.name, []).append(name)
    return classes


def read_folder(path: Path, config: TextConfig, invalid: list[str]) -> dict[str, Labelled]:
    """A folder (or .tar.gz) of class folders -> {"train": ..., "test": ...} ("test" only if the
    folder has train/ and test/). Files are ordered by class, then by name, numbers by value."""
    files = files_in(path, ".txt")
    folders = {parent for name in files for parent in name.parents}
    if path.is_dir():  # (an archive lists only folders that hold files)
        folders |= {
            PurePosixPath(p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_dir()
        }
    root = PurePosixPath("")
    while True:  # descend through a lone top folder ("aclImdb/")
        children = {f for f in folders if f.parent == root and f != root}
        if len(children) == 1:  # (a classifier needs two class folders)
            root = children.pop()
        else:
            break
    parts = (
        {"train": root / "train", "test": root / "test"}
        if root / "train" in folders
        else {"train": root}
    )
    found_classes = {split: _class_folders(files, folder) for split, folder in parts.items()}
    for split, folder in parts.items():  # a class folder without files is still a class
        for child in folders:
            if child.parent == folder and child != folder:
                found_classes[split].setdefault(child.name, [])
    names = config.classes or class_names(list(found_classes["train"]))
    for split, classes in found_classes.items():
        shown = path if not parts[split].parts else f"{path}/{parts[split]}"
        if not config.classes and split == "test" and sorted(classes) != sorted(names):
            raise UserError(
                f"{path}: train/ has the class folders {', '.join(names)} but test/ has "
                f"{', '.join(sorted(classes, key=natural_key))}; choose the classes with --classes"
            )
        for name in names:
            if not classes.get(name):
                raise UserError(
                    f"class folder {shown}/{name} is missing or holds no .txt files: give each "
                    "class a folder of .txt files, or leave it out with --classes"
                )
        if len(names) < 2:
            raise UserError(f"{shown} has only the class folder {names[0]}: a classifier needs two")
    result = {}
    for split, classes in found_classes.items():
        labelled = Labelled()
        for name in names:
            for file in sorted(classes[name], key=lambda f: natural_key(f.name)):
                labelled.add(_decode(files[file], str(file), invalid), name, str(file))
        result[split] = labelled
    return result


TABLES, JSON_LINES = (".csv", ".tsv", ".tab"), (".jsonl", ".ndjson", ".json")


def read_labelled(
    path: Path, config: TextConfig, invalid: list[str], with_labels: bool = True
) -> dict[str, Labelled]:
    """Any supported source -> {"train": Labelled} (plus "test" for a train/test folder).
    Without ``with_labels`` (to predict), files need no label column."""
    if not path.exists():
        raise UserError(f"text data not found at {path}: give a CSV/TSV/JSONL file or a folder")
    suffix = path.suffix.lower()
    if path.is_dir() or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return read_folder(path, config, invalid)
    if suffix in TABLES:
        return {"train": _read_table(path, config, invalid, with_labels)}
    if suffix in JSON_LINES:
        return {"train": _read_json_lines(path, config, invalid, with_labels)}
    raise UserError(
        f"{path}: unknown text format {suffix or '(no extension)'}; give .csv, .tsv, .jsonl, "
        "or a folder with one subfolder of .txt files per class"
    )


# 2. Arrays for training ---------------------------------------------------------------------


@dataclass
class TextData:
    train: Split
    val: Split
    test: Split
    vocabulary: Vocabulary
    classes: list[str]


def encode_labelled(
    labelled: Labelled,
    vocabulary: Vocabulary,
    names: list[str],
    config: TextConfig,
    token_lists: list[list[str]] | None = None,
) -> Split:
    """Texts -> ids padded/cut as ``config`` says; labels -> indices of ``names`` (an unknown
    label is refused, naming its line or file). ``token_lists``: the texts already tokenized."""
    token_lists = token_lists or [tokenize(text) for text in labelled.texts]
    ids, lengths = pad_sequences(
        [vocabulary.encode(tokens) for tokens in token_lists],
        config.max_len,
        config.padding,
        config.truncating,
    )
    return Split(ids, encode_labels(labelled.labels, names, labelled.where), lengths)


def _only_labelled(labelled: Labelled, source: str) -> Labelled:
    empty = [i for i, label in enumerate(labelled.labels) if not label]
    if empty:
        raise UserError(f"{labelled.where[empty[0]]} has no label: give every sample one")
    if not labelled.texts:
        raise UserError(f"{source} holds no samples")
    return labelled


def load_texts(config: TextConfig, log=print) -> TextData:
    """Train / validation / test arrays of ids, the vocabulary and the class names."""
    if config.vocab_size <= 3:
        raise UserError(f"vocab-size must exceed the 3 reserved ids, got {config.vocab_size}")
    if not config.data:
        raise UserError("no text data: give --data PATH (a CSV/TSV/JSONL file or a folder)")
    invalid: list[str] = []
    parts = read_labelled(Path(config.data), config, invalid)
    train = _only_labelled(parts["train"], config.data)
    names = config.classes or class_names(train.labels)
    if len(names) < 2:
        raise UserError(f"{config.data} has only the label {names[0]!r}: a classifier needs two")
    if config.test:
        test = _only_labelled(
            read_labelled(Path(config.test), config, invalid)["train"], config.test
        )
    elif "test" in parts:
        test = parts["test"]
    else:
        kept, held = split_rows(len(train.texts), config.test_size, config.seed, "test-size")
        train, test = train.take(sorted(kept)), train.take(sorted(held))
    if invalid:
        log(
            f"warning: {len(invalid)} files are not valid UTF-8 (first: {invalid[0]}); "
            "undecodable bytes were replaced"
        )
    tokens = [tokenize(text) for text in train.texts]
    vocabulary = Vocabulary.from_ranked(rank_words(tokens), config.vocab_size)

    def arrays(labelled: Labelled, token_lists: list[list[str]] | None = None) -> Split:
        return encode_labelled(labelled, vocabulary, names, config, token_lists)

    full_train = arrays(train, tokens)
    if config.val:
        val_split = arrays(
            _only_labelled(read_labelled(Path(config.val), config, invalid)["train"], config.val)
        )
        train_split = full_train
    else:
        kept, held = split_rows(len(full_train), config.val_size, config.seed, "val-size")
        train_split, val_split = full_train.take(kept), full_train.take(held)
    return TextData(train_split, val_split, arrays(test), vocabulary, list(names))
