"""From review text to padded id arrays: tokenizer, vocabulary, padding.

The conventions are Keras' IMDB ones: id 0 is padding, 1 marks the start of a review, 2 stands for
any word outside the vocabulary, and real words follow from id 3 in order of frequency in the
training reviews. (Keras also keeps id 3 unused; we don't, so 10,000 ids hold 9,997 words.)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elman.errors import UserError

PAD, START, OOV = 0, 1, 2
RESERVED = ("<pad>", "<start>", "<oov>")
VOCABULARY = "vocabulary.txt"  # a model folder's (and elman encode's) vocabulary file

# A word is a run of letters/digits, optionally joined by apostrophes ("don't", "90's").
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def read_text(data: bytes) -> tuple[str, bool]:
    """Decode UTF-8, replacing undecodable bytes with U+FFFD; also says whether any were. A
    byte-order mark in front (spreadsheet programs write one) is dropped."""
    try:
        return data.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="replace"), False


def tokenize(text: str) -> list[str]:
    """Lowercase, drop the ``<br />`` tags IMDB reviews are full of, split into words."""
    return _WORD.findall(_BREAK.sub(" ", text).lower())


def not_words(text: str) -> list[str]:
    """The characters ``tokenize`` skips that are neither spaces nor ASCII punctuation (emoji,
    symbols): what a reader should be told the model did not read."""
    skipped = _WORD.sub(" ", _BREAK.sub(" ", text))
    return [c for c in skipped if not c.isspace() and c not in string.punctuation]


def rank_words(token_lists: Iterable[Sequence[str]]) -> list[str]:
    """All distinct words, most frequent first (ties broken alphabetically, so it is stable)."""
    counts = Counter(word for tokens in token_lists for word in tokens)
    return sorted(counts, key=lambda word: (-counts[word], word))


@dataclass(frozen=True)
class Vocabulary:
    """``words[i]`` is the word with id ``i``; the first three are the reserved ids."""

    words: tuple[str, ...]

    @classmethod
    def from_ranked(cls, ranked_words: Sequence[str], size: int) -> Vocabulary:
        if size <= len(RESERVED):
            raise ValueError(
                f"vocabulary size must be larger than the {len(RESERVED)} reserved ids, got {size}"
            )
        return cls(RESERVED + tuple(ranked_words[: size - len(RESERVED)]))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Words -> ids, starting with START; unknown words become OOV."""
        index = self._index
        return [START] + [index.get(word, OOV) for word in tokens]

    @property
    def _index(self) -> dict[str, int]:
        # Built lazily and kept on the frozen instance.
        if "_index_cache" not in self.__dict__:
            object.__setattr__(self, "_index_cache", {w: i for i, w in enumerate(self.words)})
        return self.__dict__["_index_cache"]


def vocabulary_bytes(vocabulary: Vocabulary) -> bytes:
    """The vocabulary file's content: UTF-8, one word per line; line i is id i."""
    return ("\n".join(vocabulary.words) + "\n").encode()


def read_vocabulary(path: Path, size: int, remedy: str = "train the model again") -> Vocabulary:
    """A vocabulary file (``vocabulary_bytes``), checked: UTF-8, one distinct non-empty word
    per line, the reserved ids first, ``size`` lines. ``remedy``: what its errors tell to do."""
    try:
        words = tuple(path.read_bytes().decode("utf-8").split("\n"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 ({error.reason}): {remedy}") from None
    words = words[:-1] if words and words[-1] == "" else words  # the final newline
    if words[: len(RESERVED)] != RESERVED:
        raise UserError(
            f"{path} does not start with the reserved ids {' '.join(RESERVED)}: it is not the "
            f"vocabulary elman saved; {remedy}"
        )
    problem = next(
        (f"line {i + 1} is blank" for i, word in enumerate(words) if not word.strip()), None
    )
    if problem is None and len(set(words)) != len(words):
        seen: set[str] = set()
        repeated = next(word for word in words if word in seen or seen.add(word))
        problem = f"{repeated!r} appears twice"
    if problem is None and len(words) != size:
        problem = f"it has {len(words)} words but the model has {size} ids"
    if problem:
        raise UserError(f"{path}: {problem}; the folder mixes files of different models: {remedy}")
    return Vocabulary(words)


def pad_sequences(
    sequences: Sequence[Sequence[int]] | Sequence[np.ndarray],
    max_len: int,
    padding: str = "pre",
    truncating: str = "pre",
) -> tuple[np.ndarray, np.ndarray]:
    """Pad/cut id sequences to ``max_len`` as Keras does.

    ``truncating="pre"`` drops words at the front (keeps the end of the review); ``padding="pre"``
    puts the zeros in front. Returns ids (N, max_len) int64 and the kept lengths (N,) int64.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    for name, value in (("padding", padding), ("truncating", truncating)):
        if value not in ("pre", "post"):
            raise ValueError(f"{name} must be 'pre' or 'post', got {value!r}")
    ids = np.zeros((len(sequences), max_len), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        kept = sequence[-max_len:] if truncating == "pre" else sequence[:max_len]
        n = len(kept)
        lengths[row] = n
        if n == 0:
            continue
        if padding == "pre":
            ids[row, max_len - n :] = kept
        else:
            ids[row, :n] = kept
    return ids, lengths


def encode_texts(
    texts: Sequence[str],
    vocabulary: Vocabulary,
    max_len: int,
    padding: str = "pre",
    truncating: str = "pre",
    notes: list[str] | None = None,
) -> np.ndarray:
    """New texts -> ids (N, max_len), exactly as the training texts were encoded.

    A text with no words, or with no word the vocabulary knows, is refused with a UserError:
    a model would answer from padding alone. Texts longer than ``max_len`` are cut as in
    training; ``notes`` (if given) collects a line for each."""
    sequences = []
    for number, text in enumerate(texts, start=1):
        tokens = tokenize(text)
        ids = vocabulary.encode(tokens)
        check_words(number, len(tokens), sum(i != OOV for i in ids[1:]))
        if notes is not None and len(ids) > max_len:
            notes.append(cut_note(number, len(tokens), max_len, truncating))
        sequences.append(ids)
    ids, _ = pad_sequences(sequences, max_len, padding, truncating)
    return ids


def check_words(number: int, words: int, known: int) -> None:
    """Refuse text ``number`` (from 1) if it has no words, or none the vocabulary knows."""
    if not words:
        raise UserError(f"review {number} has no words: give it some text")
    if not known:
        raise UserError(
            f"review {number} has no word in the model's vocabulary ({words} "
            "words, all unknown): give text like the model's training texts"
        )


def cut_note(number: int, words: int, max_len: int, truncating: str) -> str:
    kept = "last" if truncating == "pre" else "first"
    return (
        f"review {number} has {words:,} words; the model reads its {kept} "
        f"{max_len - (1 if truncating == 'post' else 0)}"
    )
