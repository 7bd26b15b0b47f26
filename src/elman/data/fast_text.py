"""Text to ids at compiled speed: the same ids as ``text.tokenize`` + ``Vocabulary.encode``
(the reference, which this module is held equal to), about ten times faster.

The reference's word is ``[^\\W_]+(?:'[^\\W_]+)*`` over the lowercased text, without ``<br />``
tags. Here the tags go and the case is lowered as there (Python's own ``re.sub`` and
``str.lower``: fast, and exactly the reference's), then compiled loops (numba; runs of texts
on threads of their own, ``elman.threads``) scan each text's bytes for words with the same rule,
hash each word (64-bit FNV-1a) and find its id in a hash table of the vocabulary, comparing the
bytes to be sure. Bytes are Latin-1, where a byte is a character and Python's ``\\w`` is a
fixed table (``WORD_BYTES``); a text with any character beyond Latin-1 (2 in 1,000 IMDB reviews)
is encoded the reference way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from numba import njit

from elman.data.text import (
    _BREAK,
    OOV,
    START,
    Vocabulary,
    check_words,
    cut_note,
    pad_sequences,
    tokenize,
)
from elman.threads import in_threads, spans

# Which Latin-1 characters Python's \w matches (str.isalnum(), as re documents); "_" is not a
# word character in the reference's pattern.
WORD_BYTES = np.array([chr(code).isalnum() for code in range(256)], dtype=np.bool_)
APOSTROPHE = ord("'")
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


@njit(cache=True)
def _word_end(text: np.ndarray, start: int, end: int, word: np.ndarray) -> int:
    """The end of the word starting at ``start``: word bytes, joined by single apostrophes."""
    j = start
    while True:
        while j < end and word[text[j]]:
            j += 1
        if j + 1 < end and text[j] == APOSTROPHE and word[text[j + 1]]:
            j += 1
            continue
        return j


@njit(cache=True)
def _hash(text: np.ndarray, start: int, end: int) -> np.uint64:
    h = FNV_OFFSET
    for j in range(start, end):
        h = (h ^ np.uint64(text[j])) * FNV_PRIME
    return h


@njit(cache=True)
def _lookup(text, start, end, table, ids, word_bytes, word_starts) -> int:
    """The id of the word ``text[start:end]``: OOV unless a vocabulary word has its bytes.
    ``table``: an open-addressing hash table of vocabulary indices (-1: empty slot)."""
    mask = np.int64(len(table) - 1)
    slot = np.int64(_hash(text, start, end) & np.uint64(mask))
    while table[slot] >= 0:
        entry = table[slot]
        first = word_starts[entry]
        if word_starts[entry + 1] - first == end - start:
            same = True
            for k in range(end - start):
                if word_bytes[first + k] != text[start + k]:
                    same = False
                    break
            if same:
                return ids[entry]
        slot = np.int64((slot + 1) & mask)
    return OOV


# The loops run over a range of texts, [first, last), and each thread takes one (``in_texts``).


def in_texts(loop, text_starts: np.ndarray, *arguments) -> None:
    """``loop(*arguments, first, last)`` over runs of texts of about equal bytes, one a thread,
    all at once (``elman.threads``)."""
    bounds = spans(text_starts, max(1, min(numba.get_num_threads(), len(text_starts) - 1)))
    in_threads(lambda k: loop(*arguments, bounds[k], bounds[k + 1]), len(bounds) - 1)


def _count_words(text, text_starts, word) -> np.ndarray:
    """How many words each text has (N,)."""
    counts = np.empty(len(text_starts) - 1, dtype=np.int64)
    in_texts(_count_words_into, text_starts, text, text_starts, word, counts)
    return counts


@njit(cache=True, nogil=True)
def _count_words_into(text, text_starts, word, counts, first, last):
    for row in range(first, last):
        i, end, count = text_starts[row], text_starts[row + 1], 0
        while i < end:
            if word[text[i]]:
                i = _word_end(text, i, end, word)
                count += 1
            else:
                i += 1
        counts[row] = count


@njit(cache=True, nogil=True)
def _encode(
    text, text_starts, word, out_starts, table, ids, word_bytes, word_starts, out, known, first,
    last,
):  # fmt: skip
    """Into ``out``: the ids of every word of texts first..last-1, flat (each text's from
    ``out_starts[row]``); into ``known`` (N,): how many of each text's words the vocabulary
    knows."""
    for row in range(first, last):
        i, end, k, count = text_starts[row], text_starts[row + 1], out_starts[row], 0
        while i < end:
            if word[text[i]]:
                j = _word_end(text, i, end, word)
                out[k] = _lookup(text, i, j, table, ids, word_bytes, word_starts)
                count += out[k] != OOV
                k += 1
                i = j
            else:
                i += 1
        known[row] = count


@njit(cache=True, nogil=True)
def _padded(flat, out_starts, max_len, pad_front, cut_front, padded, first, last):
    """Into ``padded`` (N, max_len) of zeros: each text's [START, words...] cut and padded as
    ``pad_sequences`` (texts first..last-1)."""
    for row in range(first, last):
        length = out_starts[row + 1] - out_starts[row] + 1  # START and the words
        kept = min(length, max_len)
        begin = length - kept if cut_front else 0  # index in [START, words...]
        column = max_len - kept if pad_front else 0
        for k in range(kept):
            at = begin + k
            padded[row, column + k] = START if at == 0 else flat[out_starts[row] + at - 1]


def as_bytes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The texts without ``<br />`` tags, lowercased, as one Latin-1 byte array with each text's
    start (N + 1,), and the rows beyond Latin-1 (left empty there: the reference reads them)."""
    encoded, elsewhere = [], []
    for row, text in enumerate(texts):
        try:
            encoded.append(_BREAK.sub(" ", text).lower().encode("latin-1"))
        except UnicodeEncodeError:
            encoded.append(b"")
            elsewhere.append(row)
    text = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    return text, np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64), elsewhere


def _spans(text, text_starts, word, out_starts):
    """Every word's start, end and hash, flat (each text's from ``out_starts[row]``)."""
    total = out_starts[-1]
    starts, ends = np.empty(total, np.int64), np.empty(total, np.int64)
    hashes = np.empty(total, np.uint64)
    in_texts(_spans_into, text_starts, text, text_starts, word, out_starts, starts, ends, hashes)
    return starts, ends, hashes


@njit(cache=True, nogil=True)
def _spans_into(text, text_starts, word, out_starts, starts, ends, hashes, first, last):
    for row in range(first, last):
        i, end, k = text_starts[row], text_starts[row + 1], out_starts[row]
        while i < end:
            if word[text[i]]:
                j = _word_end(text, i, end, word)
                starts[k], ends[k], hashes[k] = i, j, _hash(text, i, j)
                k += 1
                i = j
            else:
                i += 1


@njit(cache=True)
def _same_bytes(text, a_start, a_end, b_start, b_end) -> bool:
    if a_end - a_start != b_end - b_start:
        return False
    for k in range(a_end - a_start):
        if text[a_start + k] != text[b_start + k]:
            return False
    return True


@njit(cache=True)
def _distinct(text, starts, ends, hashes):
    """The distinct words (as the index of a first occurrence) and how often each occurs: an
    open-addressing table keyed by hash, words compared byte by byte (exact, whatever the
    hashes), grown to stay at most half full."""
    size = 1 << 16
    slots = np.full(size, -1, np.int64)
    counts = np.zeros(size, np.int64)
    used = 0
    for k in range(len(starts)):
        if 2 * (used + 1) > size:  # grow: the same words in a table twice the size
            old_slots, old_counts = slots, counts
            size *= 2
            slots, counts = np.full(size, -1, np.int64), np.zeros(size, np.int64)
            for entry in range(len(old_slots)):
                if old_slots[entry] >= 0:
                    slot = np.int64(hashes[old_slots[entry]] & np.uint64(size - 1))
                    while slots[slot] >= 0:
                        slot = (slot + 1) & (size - 1)
                    slots[slot], counts[slot] = old_slots[entry], old_counts[entry]
        slot = np.int64(hashes[k] & np.uint64(size - 1))
        while slots[slot] >= 0:
            first = slots[slot]
            if hashes[first] == hashes[k] and _same_bytes(
                text, starts[first], ends[first], starts[k], ends[k]
            ):
                break
            slot = (slot + 1) & (size - 1)
        if slots[slot] < 0:
            slots[slot] = k
            used += 1
        counts[slot] += 1
    kept = slots >= 0
    return slots[kept], counts[kept]


def ranked_words(texts: Sequence[str]) -> list[str]:
    """``text.rank_words`` of the texts' tokens: every distinct word, most frequent first, ties
    in alphabetical order."""
    from collections import Counter

    text, text_starts, elsewhere = as_bytes(texts)
    counts = _count_words(text, text_starts, WORD_BYTES)
    out_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts, ends, hashes = _spans(text, text_starts, WORD_BYTES, out_starts)
    firsts, frequency = _distinct(text, starts, ends, hashes)
    raw = text.tobytes()
    words = Counter(
        {
            raw[starts[i] : ends[i]].decode("latin-1"): int(n)
            for i, n in zip(firsts, frequency, strict=True)
        }
    )
    for row in elsewhere:
        words.update(tokenize(texts[row]))
    return sorted(words, key=lambda word: (-words[word], word))


class FastEncoder:
    """``encode(texts)``: each text's ids, START first, as ``vocabulary.encode(tokenize(text))``."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        known = []
        for i, w in enumerate(vocabulary.words[3:], start=3):
            try:
                known.append((w.encode("latin-1"), i))
            except UnicodeEncodeError:  # never in a Latin-1 text
                continue
        self.ids = np.array([i for _, i in known], dtype=np.int64)
        self.word_bytes = np.frombuffer(b"".join(b for b, _ in known) or b"\0", np.uint8)
        self.word_starts = np.cumsum([0] + [len(b) for b, _ in known]).astype(np.int64)
        size = 1 << max(4, (4 * len(known)).bit_length())  # at most a quarter full
        self.table = np.full(size, -1, dtype=np.int64)
        for entry, (word, _) in enumerate(known):
            slot = int(_hash(np.frombuffer(word, np.uint8), 0, len(word))) & (size - 1)
            while self.table[slot] >= 0:
                slot = (slot + 1) & (size - 1)
            self.table[slot] = entry

    def _flat(self, texts: Sequence[str]):
        """The compiled pass: every Latin-1 text's word ids, flat, and per text how many the
        vocabulary knows, how many words it has, where its ids start (N + 1,); and the rows
        beyond Latin-1, left empty for the reference."""
        text, text_starts, elsewhere = as_bytes(texts)
        counts = _count_words(text, text_starts, WORD_BYTES)
        out_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.empty(out_starts[-1], dtype=np.int64)
        known = np.empty(len(counts), dtype=np.int64)
        in_texts(
            _encode, text_starts, text, text_starts, WORD_BYTES, out_starts, self.table,
            self.ids, self.word_bytes, self.word_starts, flat, known,
        )  # fmt: skip
        return flat, known, counts, out_starts, elsewhere

    def encode(
        self, texts: Sequence[str], max_len: int, padding: str = "pre", truncating: str = "pre"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids (N, max_len) as ``pad_sequences`` makes them, and for each text its number of
        words and of words the vocabulary knows (N,), (N,)."""
        flat, known, counts, out_starts, elsewhere = self._flat(texts)
        ids = np.zeros((len(counts), max_len), dtype=np.int64)
        pad_front, cut_front = padding == "pre", truncating == "pre"
        in_texts(_padded, out_starts, flat, out_starts, max_len, pad_front, cut_front, ids)
        for row in elsewhere:  # beyond Latin-1: the reference's way
            sequence = self.vocabulary.encode(tokenize(texts[row]))
            ids[row] = pad_sequences([sequence], max_len, padding, truncating)[0][0]
            counts[row] = len(sequence) - 1
            known[row] = sum(i != OOV for i in sequence[1:])
        return ids, counts, known

    def encode_texts(
        self,
        texts: Sequence[str],
        max_len: int,
        padding: str = "pre",
        truncating: str = "pre",
        notes: list[str] | None = None,
    ) -> np.ndarray:
        """``text.encode_texts``, compiled: the same ids, the same refusals and notes."""
        ids, counts, known = self.encode(texts, max_len, padding, truncating)
        refused = np.flatnonzero((counts == 0) | (known == 0))
        if len(refused):
            row = int(refused[0])
            check_words(row + 1, int(counts[row]), int(known[row]))
        if notes is not None:
            notes.extend(
                cut_note(int(row) + 1, int(counts[row]), max_len, truncating)
                for row in np.flatnonzero(counts + 1 > max_len)
            )
        return ids

    def sequences(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text's ids, START first, uncut: one flat int32 array and each text's offset
        (N + 1,), as ``EncodedCorpus`` keeps them."""
        flat, _, counts, out_starts, elsewhere = self._flat(texts)
        with_start = np.insert(flat, out_starts[:-1], START)
        if elsewhere:
            rows = np.split(with_start, out_starts[1:-1] + np.arange(1, len(counts)))
            for row in elsewhere:
                rows[row] = np.array(self.vocabulary.encode(tokenize(texts[row])))
            with_start = np.concatenate(rows)
            counts = np.array([len(r) - 1 for r in rows])
        return with_start.astype(np.int32), np.concatenate([[0], np.cumsum(counts + 1)])
