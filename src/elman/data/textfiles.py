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
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from elman.data.source import Encoding, Fitted, Given, Inputs, Learned, Log, Source, Splits, Writer
from elman.data.split import Split, class_names, encode_labels, files_in, natural_key, split_rows
from elman.data.text import (
    Vocabulary,
    encode_texts,
    pad_sequences,
    rank_words,
    read_text,
    tokenize,
)
from elman.errors import UserError
from elman.settings import setting


@dataclass
class TextConfig:
    """Where the texts are and how to turn them into arrays (as for IMDB; the vocabulary size
    and the length are the model's, ``ModelConfig.vocab_size``/``max_len``)."""

    data: str = setting("", "CSV/TSV/JSONL file, or folder (or .tar.gz) of class folders")
    test: str | None = setting(
        None, "test data in the same format (none: the folder's test/, else a seeded split)"
    )
    val: str | None = setting(None, "validation data (none: a seeded split of the training data)")
    text_column: str = setting("text", "CSV/TSV column or JSON key of the text")
    label_column: str = setting("label", "CSV/TSV column or JSON key of the label")
    classes: list[str] | None = setting(
        None, "folder layout: the class folders to read, in label order (none: all)"
    )
    padding: str = setting("pre", "where short texts get their padding", choices=("pre", "post"))
    truncating: str = setting(
        "pre", "where long texts are cut (pre: keep the end)", choices=("pre", "post")
    )
    val_size: float = setting(
        0.2, "training samples held out for validation: a fraction < 1 or a count"
    )
    test_size: float = setting(
        0.2, "without test data, samples held out for testing: a fraction < 1 or a count"
    )


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


def _pieces(path: Path, invalid: list[str]) -> Iterator[str]:
    """The file's text in pieces that end at a line feed, read one at a time (a line feed never
    falls inside a UTF-8 character, so each decodes as the whole file would); undecodable bytes
    are replaced and the file is named in ``invalid`` once."""
    noted = False
    with open(path, "rb") as file:
        for raw in file:
            text, valid = read_text(raw)
            if not valid and not noted:
                invalid.append(str(path))
                noted = True
            yield text


def _table_records(
    path: Path, config: TextConfig, invalid: list[str], with_labels: bool
) -> Iterator[tuple[str, str, str]]:
    """(text, label, where) for each row of a CSV (comma) or TSV (tab) file with a header row
    naming the text and label columns (without ``with_labels``, the label column is read only
    if there is one), read a piece at a time."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    lines = (line for piece in _pieces(path, invalid) for line in io.StringIO(piece, newline=""))
    rows = csv.reader(lines, delimiter=delimiter, strict=True)  # (a stray quote: an error)
    header = next(_rows_of(rows, path), (0, None))[1]
    if not header:
        raise UserError(f"{path} is empty: give a header row and one sample per row")
    columns = []
    for name, option in (
        (config.text_column, "`text_column`"),
        (config.label_column, "`label_column`"),
    ):
        if name in header:
            columns.append(header.index(name))
        elif option == "`label_column`" and not with_labels:
            columns.append(None)
        else:
            raise UserError(
                f"{path} has no column {name!r} (its columns: {', '.join(header)}); "
                f"name the right one with {option}"
            )
    for line, row in _rows_of(rows, path):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(
                f"{path} line {line} has {len(row)} fields but the header has {len(header)}; "
                "quote texts that contain the delimiter"
            )
        label = "" if columns[1] is None else row[columns[1]].strip()
        yield row[columns[0]], label, f"{path} line {line}"


def _rows_of(rows, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its fields) for each record of a CSV reader: a record can
    span lines (a quoted text with line breaks), and an error is told where its record began
    (an unclosed quote is found only lines later)."""
    while True:
        start = rows.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            raise UserError(
                f"{path} line {start}: the record that starts there is not valid CSV ({error}); "
                'close its quotes, and double a quote inside a quoted text ("")'
            ) from None
        yield start, row


def _json_records(
    path: Path, config: TextConfig, invalid: list[str], with_labels: bool
) -> Iterator[tuple[str, str, str]]:
    """(text, label, where) for each line of a JSON Lines file: one object per line with the
    text and label keys (the label optional without ``with_labels``), read a piece at a time.
    Lines end at a line feed or carriage return only: a JSON string may hold U+2028 and the
    other characters ``str.splitlines`` would also cut at."""
    lines = (line for piece in _pieces(path, invalid) for line in _json_lines_of(piece))
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {line_number} is not valid JSON ({error.msg})") from None
        for key, option in (
            (config.text_column, "`text_column`"),
            (config.label_column, "`label_column`"),
        ):
            optional = option == "`label_column`" and not with_labels
            if not isinstance(record, dict) or (key not in record and not optional):
                raise UserError(
                    f"{path} line {line_number} has no key {key!r}; name the right one with "
                    f"{option}"
                )
        where = f"{path} line {line_number}"
        text = record[config.text_column]
        if not isinstance(text, str):
            raise UserError(f"{where}: the text ({config.text_column!r}) must be a string")
        yield text, _json_label(record.get(config.label_column, ""), where, with_labels), where


def _json_lines_of(piece: str) -> list[str]:
    lines = piece.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if piece.endswith(("\n", "\r")) else lines


def _json_label(value: object, where: str, required: bool) -> str:
    """A JSON label as its class name: a string, or a whole number (1, 1.0 and "1" are one class).
    null, true/false, 1.5, lists and objects are refused: none names a class unambiguously."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():  # 1.0 is class 1, as 1 and "1" are
        return str(int(value))
    if not required and value is None:
        return ""
    raise UserError(
        f"{where}: the label {json.dumps(value)[:30]} is not a string or a whole number; "
        "give each sample a class name or number"
    )


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
                f"{', '.join(sorted(classes, key=natural_key))}; choose the classes with `classes`"
            )
        for name in names:
            if not classes.get(name):
                raise UserError(
                    f"class folder {shown}/{name} is missing or holds no .txt files: give each "
                    "class a folder of .txt files, or leave it out with `classes`"
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


def _records(
    path: Path, config: TextConfig, invalid: list[str], with_labels: bool = True
) -> Iterator[tuple[str, str, str]]:
    """(text, label, where) for each sample of a CSV/TSV or JSON Lines file, a piece at a time."""
    read = _table_records if path.suffix.lower() in TABLES else _json_records
    return read(path, config, invalid, with_labels)


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
    if suffix in TABLES + JSON_LINES:
        found = Labelled()
        for record in _records(path, config, invalid, with_labels):
            found.add(*record)
        return {"train": found}
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
    max_len: int,
    token_lists: list[list[str]] | None = None,
) -> Split:
    """Texts -> ids padded/cut to ``max_len`` as ``config`` says; labels -> indices of ``names``
    (an unknown label is refused, naming its line or file). ``token_lists``: already tokenized."""
    token_lists = token_lists or [tokenize(text) for text in labelled.texts]
    ids, lengths = pad_sequences(
        [vocabulary.encode(tokens) for tokens in token_lists],
        max_len,
        config.padding,
        config.truncating,
    )
    return Split(ids, encode_labels(labelled.labels, names, labelled.where), lengths)


def _only_labelled(labelled: Labelled, source: str) -> Labelled:
    records = zip(labelled.texts, labelled.labels, labelled.where, strict=True)
    for _ in _labelled_only(records, source):
        pass
    return labelled


def _labelled_only(
    records: Iterable[tuple[str, str, str]], source: str
) -> Iterator[tuple[str, str, str]]:
    """The (text, label, where) ``records`` of ``source``, refusing a sample without a label
    and a source without samples."""
    count = 0
    for record in records:
        if not record[1]:
            raise UserError(f"{record[2]} has no label: give every sample one")
        count += 1
        yield record
    if not count:
        raise UserError(f"{source} holds no samples")


def _class_names(config: TextConfig, labels: Iterable[str]) -> list[str]:
    """``--classes``, or the labels found in a fixed order; at least two."""
    names = config.classes or class_names(list(labels))
    if len(names) < 2:
        raise UserError(f"{config.data} has only the label {names[0]!r}: a classifier needs two")
    return names


def _warn_invalid(invalid: list[str], log: Log) -> None:
    if invalid:
        log(
            f"warning: {len(invalid)} files are not valid UTF-8 (first: {invalid[0]}); "
            "undecodable bytes were replaced"
        )


def load_texts(
    config: TextConfig, *, vocab_size: int, max_len: int, seed: int, log: Log = print
) -> TextData:
    """Train / validation / test arrays of ``vocab_size`` ids cut/padded to ``max_len``, the
    vocabulary and the class names; held-out splits are ``seed``-ed."""
    if vocab_size <= 3:
        raise UserError(f"vocab-size must exceed the 3 reserved ids, got {vocab_size}")
    if not config.data:
        raise UserError("no text data: give `data` PATH (a CSV/TSV/JSONL file or a folder)")
    invalid: list[str] = []
    parts = read_labelled(Path(config.data), config, invalid)
    train = _only_labelled(parts["train"], config.data)
    names = _class_names(config, train.labels)
    if config.test:
        test = _only_labelled(
            read_labelled(Path(config.test), config, invalid)["train"], config.test
        )
    elif "test" in parts:
        test = parts["test"]
    else:
        kept, held = split_rows(len(train.texts), config.test_size, seed, "test-size")
        train, test = train.take(sorted(kept)), train.take(sorted(held))
    _warn_invalid(invalid, log)
    tokens = [tokenize(text) for text in train.texts]
    vocabulary = Vocabulary.from_ranked(rank_words(tokens), vocab_size)

    def arrays(labelled: Labelled, token_lists: list[list[str]] | None = None) -> Split:
        return encode_labelled(labelled, vocabulary, names, config, max_len, token_lists)

    full_train = arrays(train, tokens)
    if config.val:
        val_split = arrays(
            _only_labelled(read_labelled(Path(config.val), config, invalid)["train"], config.val)
        )
        train_split = full_train
    else:
        kept, held = split_rows(len(full_train), config.val_size, seed, "val-size", least=0)
        train_split, val_split = full_train.take(kept), full_train.take(held)
    return TextData(train_split, val_split, arrays(test), vocabulary, list(names))


def stream(
    settings: TextConfig, encoding: Encoding, writer: Writer, log: Log = print
) -> Learned | None:
    """``load_texts`` for elman encode, a piece at a time, when every file given is a CSV/TSV
    or JSONL file (else None: read whole). Three passes over the training file (count and
    labels; the vocabulary, over the training rows; the ids), at most ``writer.shard_size``
    samples of a split in memory: the same vocabulary and classes as ``load_texts``, and the
    same rows in each split (held out by the same seeded draws), kept in file order."""
    config = settings
    files = [Path(name) for name in (config.data, config.test, config.val) if name]
    if not files or not all(f.is_file() and f.suffix.lower() in TABLES + JSON_LINES for f in files):
        return None
    path, invalid = Path(config.data), []
    names, in_test, in_val = _held_out(path, config, encoding.seed, invalid)
    training = (
        tokenize(text)
        for (text, _, _), test in zip(_records(path, config, []), in_test, strict=True)
        if not test
    )
    vocabulary = Vocabulary.from_ranked(rank_words(training), encoding.vocab_size)
    chunks = {part: Labelled() for part in ("train", "val", "test")}

    def add(part: str, record: tuple[str, str, str] | None = None) -> None:
        """A sample into its split's chunk; a full chunk (or, without one, the rest) written."""
        if record is not None:
            chunks[part].add(*record)
        if len(chunks[part].texts) >= writer.shard_size or (record is None and chunks[part].texts):
            writer.add(
                part, encode_labelled(chunks[part], vocabulary, names, config, encoding.max_len)
            )
            chunks[part] = Labelled()

    kept = iter(in_val)  # (by position among the rows not held out for testing)
    for test, record in zip(in_test, _records(path, config, []), strict=True):
        add("test" if test else "val" if next(kept) else "train", record)
    for part, name in (("test", config.test), ("val", config.val)):
        for record in _labelled_only(_records(Path(name), config, invalid), name) if name else ():
            add(part, record)
    for part in chunks:
        add(part)
    _warn_invalid(invalid, log)
    return Learned(list(names), vocabulary)


def _held_out(
    path: Path, config: TextConfig, seed: int, invalid: list[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A first pass over the training file: the class names, and which rows ``load_texts``
    holds out for testing (by row) and for validation (by position among the rest)."""
    labels, total = set(), 0
    for _, label, _ in _labelled_only(_records(path, config, invalid), config.data):
        labels.add(label)
        total += 1
    names = _class_names(config, labels)
    in_test = np.zeros(total, dtype=bool)
    if not config.test:
        in_test[split_rows(total, config.test_size, seed, "test-size")[1]] = True
    in_val = np.zeros(total - int(in_test.sum()), dtype=bool)
    if not config.val:
        in_val[split_rows(len(in_val), config.val_size, seed, "val-size", least=0)[1]] = True
    return names, in_test, in_val


# 3. The source: what elman train/evaluate/predict call ------------------------------------------


def read(settings: TextConfig, encoding: Encoding, log: Log = print) -> Splits:
    text = load_texts(
        settings,
        vocab_size=encoding.vocab_size,
        max_len=encoding.max_len,
        seed=encoding.seed,
        log=log,
    )
    return Splits(text.train, text.val, text.test, Learned(text.classes, text.vocabulary))


def evaluation(fitted: Fitted, path: Path | None, log: Log = print) -> Split:
    """Every labelled text of ``path`` (a folder's test/ part if it has one), or the run's own
    test split."""
    if path is None:
        return read(fitted.settings, fitted.encoding, log).test
    parts = read_labelled(path, fitted.settings, invalid=[])
    labelled = parts.get("test", parts["train"])
    learned = fitted.learned
    return encode_labelled(
        labelled, learned.vocabulary, learned.classes, fitted.settings, fitted.encoding.max_len
    )


def read_texts(given: Given, columns: TextConfig, log: Log = print) -> list[tuple[str, str]]:
    """(where it came from, text) for every text given as an argument, a file (one a line; a
    CSV/TSV/JSONL gives the text column named in ``columns``), a folder of .txt files or
    standard input (``-``, one a line)."""
    texts: list[tuple[str, str]] = []

    def decode(source: str, data: bytes) -> str:
        text, valid = read_text(data)
        if not valid:
            log(f"warning: {source} is not valid UTF-8; undecodable bytes were replaced")
        return text

    def add_lines(source: str, data: bytes) -> None:
        lines = decode(source, data).splitlines()
        texts.extend((f"{source}:{n}", line) for n, line in enumerate(lines, 1) if line.strip())

    for number, text in enumerate(given.texts, start=1):
        if text == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise UserError("standard input is closed: pipe reviews into it, or give text")
            add_lines("<stdin>", sys.stdin.buffer.read())
        else:
            texts.append((f"argument {number}", text))
    for path in given.files:
        if not path.is_file():
            raise UserError(f"`file` {path} is not a file: give a text file, one review a line")
        if path.suffix.lower() in TABLES + JSON_LINES:  # the text column (or key) of each row
            invalid: list[str] = []
            samples = read_labelled(path, columns, invalid, with_labels=False)["train"]
            if invalid:
                log(f"warning: {path} is not valid UTF-8; undecodable bytes were replaced")
            texts.extend(zip(samples.where, samples.texts, strict=True))
        else:
            add_lines(str(path), path.read_bytes())
    for folder in given.folders:
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if not files:
            raise UserError(f"`folder` {folder} holds no .txt files: give a folder of reviews")
        texts.extend((str(path), decode(str(path), path.read_bytes())) for path in files)
    if not texts:
        raise UserError(
            "no review to predict: give text, `file` FILE (one review a line), `folder` DIR "
            "(.txt files) or - (standard input)"
        )
    return texts


def text_inputs(fitted: Fitted, given: Given, log: Log = print) -> Inputs:
    """Texts to predict (see ``read_texts``), encoded with the model's vocabulary."""
    settings = fitted.settings
    columns = settings if isinstance(settings, TextConfig) else TextConfig()
    texts = read_texts(given, columns, log)
    notes: list[str] = []
    x = encode_texts(
        [text for _, text in texts],
        fitted.learned.vocabulary,
        fitted.encoding.max_len,
        settings.padding,
        settings.truncating,
        notes,
    )
    for note in notes:
        log(f"note: {note}")
    shown = [" ".join(text.split())[:60] for _, text in texts]
    return Inputs(x, [where for where, _ in texts], shown)


# The defaults (and ``--preset best``): IMDB's best recipe without its data settings (which split
# to validate on), found by ablation on a validation split of IMDB's movies (README, "How good
# can a simple RNN get?") and the best on the ratings example's validation split too (README,
# "How recipes are chosen"); ``--preset book`` is the reference model (the IMDB job's defaults).
BEST = {
    "model": {"bidirectional": True, "pooling": "max+mean", "mask_padding": True},
    "train": {"epochs": 4, "lr_decay": 0.5},
}
BOOK = {
    "model": {"bidirectional": False, "pooling": "last", "mask_padding": False},
    "train": {"epochs": 3, "lr_decay": 1.0},
}


SOURCE = Source(
    name="text",
    config=TextConfig,
    network="words",
    read=read,
    evaluation=evaluation,
    inputs=text_inputs,
    stream=stream,
    preset=BEST,
    recipes={"best": {}, "book": BOOK},
    recipe_help={
        "reference": "the defaults: IMDB's best recipe, reading both directions over the words "
        "only, max and mean pooling, 4 epochs with the rate halved after each",
        "best": "the same as the defaults",
        "book": "the book's SimpleRNN(32) over 500 words, last state, 3 epochs (elman train "
        "imdb's reference model)",
    },
    help="your own labelled texts: CSV/TSV, JSON Lines, or a folder per class",
    description="Classify texts (two classes or more) from a CSV/TSV with a header row, a JSON "
    "Lines file, or a folder (or .tar.gz) with one subfolder of .txt files per class, "
    "optionally inside train/ and test/ folders (the aclImdb layout).",
)
