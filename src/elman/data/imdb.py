"""The Large Movie Review Dataset (Maas et al., 2011): from the archive to padded id arrays.

Path of the data, top to bottom:

1. ``resolve_source``: the archive or folder the user gave (``--data``/``ELMAN_DATA``), or the
   official ``aclImdb_v1.tar.gz`` downloaded once into the user's cache, md5-verified.
2. ``read_reviews``: the labelled reviews, read straight out of the .tar.gz (no extraction).
3. ``encode_corpus``: tokenize, rank the training words by frequency, turn every review into ids.
   Cached on disk, keyed by the archive's hash, so a second run starts within seconds.
4. ``load_imdb``: cut the vocabulary to ``vocab_size``, pad/cut to ``max_len``, split 20,000 /
   5,000 with a seeded shuffle; the 25,000 test reviews stay as they are.
5. ``SOURCE``: the source interface (``elman.data.source``) over the above.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from elman.data.archive import archive_files
from elman.data.source import Encoding, Fitted, Learned, Log, Source, Splits
from elman.data.split import Split, mapped, split_rows
from elman.data.text import OOV, Vocabulary, pad_sequences, rank_words, tokenize
from elman.data.textfiles import BEST as TEXT_BEST
from elman.data.textfiles import text_inputs
from elman.errors import UserError
from elman.files import atomic_write
from elman.settings import setting

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"
# Bump when tokenization or the cache layout changes, so old caches are not reused.
ENCODING_VERSION = 2

_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
# Each folder's urls_<label>.txt names, on line i, the movie that review i is about.
_REVIEW_OR_URLS = re.compile(
    r"(?:^|/)aclImdb/(train|test)/(?:(pos|neg)/(\d+)_(\d+)\.txt|urls_(pos|neg)\.txt)$"
)
_UNLABELED = re.compile(r"(?:^|/)aclImdb/train/unsup/(\d+)_0\.txt$")
SPLITS = ("train", "test")


def default_cache_dir() -> Path:
    """``$ELMAN_CACHE`` or the user's cache directory (e.g. ~/.cache/elman)."""
    import pooch

    return Path(os.environ.get("ELMAN_CACHE") or pooch.os_cache("elman"))


# 1. Where the data comes from ---------------------------------------------------------------


def download(url: str = URL, md5: str = MD5, cache_dir: Path | None = None) -> Path:
    """Download ``url`` into the cache (once), with a progress bar, and verify its md5.

    pooch writes to a temporary file and renames it only after the checksum matched, so an
    interrupted or corrupted download is never taken for the archive.
    """
    import pooch

    cache_dir = Path(cache_dir or default_cache_dir())
    try:
        path = pooch.retrieve(
            url, known_hash=f"md5:{md5}", fname=ARCHIVE_NAME, path=cache_dir, progressbar=True
        )
    except ValueError as error:  # pooch's checksum mismatch
        raise UserError(
            f"downloaded IMDB archive from {url} failed its md5 check ({error}); "
            "try again, or pass a local copy with `data`"
        ) from None
    except Exception as error:  # network errors of every kind
        raise UserError(
            f"could not download the IMDB archive from {url} ({type(error).__name__}: {error}); "
            "pass a local copy with `data` PATH or ELMAN_DATA"
        ) from None
    return Path(path)


def resolve_source(
    data: str | Path | None = None, cache_dir: Path | None = None, log: Log = print
) -> Path:
    """The archive or folder to read: ``data``, else ``$ELMAN_DATA``, else the official download.
    An archive is checked against the ``.sha256`` beside it, else against the official md5;
    one that is neither is used with a warning (``log``)."""
    data = data or os.environ.get("ELMAN_DATA")
    if not data:
        return download(cache_dir=cache_dir)
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(
            f"IMDB data not found at {path}: give the aclImdb .tar.gz or its extracted folder"
        )
    if path.is_file():
        _check_sidecar_checksum(path, log)
    return path


def _check_sidecar_checksum(archive: Path, log: Log = print) -> None:
    """If ``<archive>.sha256`` lies beside the archive (as in ../shared/data), it must match;
    without one, an archive that is not the official one (md5) is used with a warning."""
    sidecar = archive.with_name(archive.name + ".sha256")
    if not sidecar.exists():
        if file_digest(archive, "md5") != MD5:
            log(
                f"warning: {archive} has no {sidecar.name} beside it and is not the official "
                "archive (its md5 differs): it is read unverified"
            )
        return
    expected = sidecar.read_text().split()[0].lower()
    actual = file_sha256(archive)
    if actual != expected:
        raise UserError(
            f"{archive} does not match its checksum in {sidecar.name} (truncated or corrupted); "
            "copy or download it again"
        )


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(source: Path) -> str:
    """A key for the cache: the archive's sha256, or for a folder its file names, sizes, mtimes."""
    if source.is_file():
        return file_sha256(source)
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.txt")):
        if _REVIEW.search(path.as_posix()):
            stat = path.stat()
            digest.update(f"{path.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


# 2. Reading ---------------------------------------------------------------------------------


@dataclass
class Reviews:
    """Labelled review texts of one split, in a fixed order (negatives then positives, by id)."""

    texts: list[str]
    labels: np.ndarray  # (N,) int64, 1 = positive
    movies: np.ndarray  # (N,) int32: which movie each review is about (-1: no urls file)


def _text_files(source: Path, pattern: re.Pattern) -> Iterator[tuple[re.Match, str]]:
    """(match, text) for every file of ``source`` (.tar.gz or folder) whose path matches."""
    if source.is_dir():
        for path in source.rglob("*.txt"):
            if match := pattern.search(path.as_posix()):
                yield match, path.read_bytes().decode("utf-8", errors="replace")
        return
    try:
        for name, data in archive_files(source, pattern.search):
            yield pattern.search(name), data.decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise UserError(
            f"cannot read the IMDB archive {source} ({error}); it is truncated or corrupted: "
            "download or copy it again"
        ) from None


def read_reviews(source: Path) -> dict[str, Reviews]:
    """Read the labelled train and test reviews from a .tar.gz or an extracted folder."""
    found: dict[str, list[tuple[int, int, str]]] = {split: [] for split in SPLITS}
    urls: dict[tuple[str, int], list[str]] = {}
    for match, text in _text_files(source, _REVIEW_OR_URLS):
        split, label, review_id, _rating, urls_label = match.groups()
        if urls_label:
            urls[split, int(urls_label == "pos")] = text.splitlines()
        else:
            found[split].append((int(label == "pos"), int(review_id), text))

    reviews = {}
    for split, items in found.items():
        counts = [sum(1 for label, _, _ in items if label == wanted) for wanted in (0, 1)]
        if min(counts) == 0:
            raise UserError(
                f"{source} lacks the aclImdb layout: no reviews in aclImdb/{split}/neg or /pos "
                "(expected aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt)"
            )
        items.sort(key=lambda item: (item[0], item[1]))
        reviews[split] = Reviews(
            texts=[text for _, _, text in items],
            labels=np.array([label for label, _, _ in items], dtype=np.int64),
            movies=_movies(split, [(label, review_id) for label, review_id, _ in items], urls),
        )
    return reviews


def _movies(split: str, reviews: list[tuple[int, int]], urls: dict) -> np.ndarray:
    """A movie number per (label, id) review, from the split's urls files; -1 without them."""
    numbers: dict[str, int] = {}
    movies = np.full(len(reviews), -1, dtype=np.int32)
    for row, (label, review_id) in enumerate(reviews):
        lines = urls.get((split, label), [])
        if review_id < len(lines):
            movie = lines[review_id].strip().removesuffix("/usercomments")
            movies[row] = numbers.setdefault(movie, len(numbers))
    return movies


def read_unlabeled(source: Path, limit: int | None = None) -> list[str]:
    """Texts of the unlabelled reviews (``aclImdb/train/unsup``), in id order, at most ``limit``."""
    found = [(int(match.group(1)), text) for match, text in _text_files(source, _UNLABELED)]
    return [text for _, text in sorted(found)[:limit]]


# 3. Encoding, cached -------------------------------------------------------------------------


@dataclass
class EncodedCorpus:
    """Every review as ids over the FULL training-word ranking (id = 3 + rank).

    Cutting to a vocabulary size later is just ``ids >= size -> OOV``, so one cache serves all
    vocabulary sizes. ``ids[split]`` is flat; review i is ``ids[offsets[i]:offsets[i+1]]``.
    """

    ranked_words: list[str]
    ids: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    movies: dict[str, np.ndarray]
    key: str = ""  # the cache file's name: what the arrays derived from it are named after

    def sequences(self, split: str, vocab_size: int) -> list[np.ndarray]:
        flat = self.ids[split]
        flat = np.where(flat >= vocab_size, OOV, flat)
        return np.split(flat, self.offsets[split][1:-1])


def encode_corpus(source: Path, cache_dir: Path | None = None) -> EncodedCorpus:
    """Tokenize and encode all reviews, through an on-disk cache keyed by the source's hash."""
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_file = cache_dir / f"imdb-{fingerprint(source)[:20]}-v{ENCODING_VERSION}.npz"
    if cache_file.exists():
        try:
            return replace(_load_cache(cache_file), key=cache_file.stem)
        except Exception:  # an unreadable cache is rebuilt, never trusted
            pass
    reviews = read_reviews(source)
    corpus = encode_reviews(reviews)
    _save_cache(cache_file, corpus)
    return replace(corpus, key=cache_file.stem)


def encode_reviews(reviews: dict[str, Reviews]) -> EncodedCorpus:
    """Rank the training reviews' words and encode every review with all of them, by the
    compiled text path (``elman.data.fast_text``: the reference's words and ids, held equal to
    ``encode_reviews_reference`` in the tests)."""
    from elman.data.fast_text import FastEncoder, ranked_words

    ranked = ranked_words(reviews["train"].texts)
    encoder = FastEncoder(Vocabulary.from_ranked(ranked, len(ranked) + 3))
    corpus = EncodedCorpus(ranked, {}, {}, {}, {})
    for split in SPLITS:
        corpus.ids[split], corpus.offsets[split] = encoder.sequences(reviews[split].texts)
        corpus.labels[split] = reviews[split].labels
        corpus.movies[split] = reviews[split].movies
    return corpus


def encode_reviews_reference(reviews: dict[str, Reviews]) -> EncodedCorpus:
    """``encode_reviews`` in plain Python: ``tokenize``, ``rank_words``, ``Vocabulary.encode``."""
    tokens = {split: [tokenize(text) for text in reviews[split].texts] for split in SPLITS}
    ranked = rank_words(tokens["train"])
    vocabulary = Vocabulary.from_ranked(ranked, len(ranked) + 3)
    corpus = EncodedCorpus(ranked, {}, {}, {}, {})
    for split in SPLITS:
        encoded = [vocabulary.encode(review) for review in tokens[split]]
        corpus.ids[split] = np.fromiter((i for review in encoded for i in review), dtype=np.int32)
        corpus.offsets[split] = np.cumsum([0] + [len(review) for review in encoded])
        corpus.labels[split] = reviews[split].labels
        corpus.movies[split] = reviews[split].movies
    return corpus


def _save_cache(path: Path, corpus: EncodedCorpus) -> None:
    """Written atomically: a kill never leaves a half-written cache under the real name."""
    arrays = {"ranked_words": np.array(corpus.ranked_words, dtype=str)}
    for split in SPLITS:
        arrays[f"{split}_ids"] = corpus.ids[split]
        arrays[f"{split}_offsets"] = corpus.offsets[split]
        arrays[f"{split}_labels"] = corpus.labels[split]
        arrays[f"{split}_movies"] = corpus.movies[split]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def _load_cache(path: Path) -> EncodedCorpus:
    with np.load(path, allow_pickle=False) as arrays:
        return EncodedCorpus(
            ranked_words=arrays["ranked_words"].tolist(),
            ids={split: arrays[f"{split}_ids"] for split in SPLITS},
            offsets={split: arrays[f"{split}_offsets"] for split in SPLITS},
            labels={split: arrays[f"{split}_labels"] for split in SPLITS},
            movies={split: arrays[f"{split}_movies"] for split in SPLITS},
        )


# 4. Arrays for training ------------------------------------------------------------------------


@dataclass
class IMDBConfig:
    """Where the archive is and how to turn its reviews into arrays (the vocabulary size and the
    length are the model's, ``ModelConfig.vocab_size``/``max_len``)."""

    data: str | None = setting(
        None, "aclImdb .tar.gz or folder (none: $ELMAN_DATA, else download the official archive)"
    )
    padding: str = setting("pre", "where short reviews get their padding", choices=("pre", "post"))
    truncating: str = setting(
        "pre", "where long reviews are cut (pre: keep the end)", choices=("pre", "post")
    )
    val_size: int = setting(
        5_000, "training reviews held out for validation (0: train on all 25,000, no validation)"
    )
    val_split: str = setting(
        "random",
        "random: a seeded shuffle; movie: whole movies held out, so validation reviews are of "
        "other movies than training's, as the test reviews are",
        choices=("random", "movie"),
    )
    cache_dir: str | None = setting(
        None, "where downloads and encoded arrays are cached (none: $ELMAN_CACHE or ~/.cache)"
    )


@dataclass
class IMDBData:
    train: Split
    val: Split
    test: Split
    vocabulary: Vocabulary


def load_imdb(
    config: IMDBConfig, *, vocab_size: int, max_len: int, seed: int, log: Log = print
) -> IMDBData:
    """The IMDB arrays: ``vocab_size`` ids, reviews padded/cut to ``max_len``, the 25,000
    training reviews split by a ``seed``-ed shuffle (20,000 / 5,000 by default), the 25,000 test
    reviews as they are."""
    if max_len <= 0:
        raise UserError(f"`max_len` must be positive, got {max_len}")
    if vocab_size <= 3:
        raise UserError(f"`vocab_size` must exceed the 3 reserved ids, got {vocab_size}")
    cache_dir = Path(config.cache_dir) if config.cache_dir else None
    source = resolve_source(config.data, cache_dir, log)
    corpus = encode_corpus(source, cache_dir)

    def split_arrays(split: str) -> Split:
        sequences = corpus.sequences(split, vocab_size)
        x, lengths = pad_sequences(sequences, max_len, config.padding, config.truncating)
        return Split(x, corpus.labels[split].astype(np.float32), lengths)

    full_train, test = split_arrays("train"), split_arrays("test")
    if not 0 <= config.val_size < len(full_train):
        raise UserError(
            f"val-size must be between 0 and {len(full_train) - 1} (the archive has "
            f"{len(full_train)} training reviews), got {config.val_size}"
        )
    if config.val_split == "movie" and config.val_size:
        train_rows, val_rows = movie_split_rows(corpus.movies["train"], config.val_size, seed)
    else:
        train_rows, val_rows = split_rows(
            len(full_train), config.val_size, seed, "val-size", least=0
        )
    vocabulary = Vocabulary.from_ranked(corpus.ranked_words, vocab_size)
    # The padded arrays, memory-mapped from the cache: the workers of one machine share them.
    arrays = Path(cache_dir or default_cache_dir()) / "arrays"
    shape = f"{corpus.key}-{vocab_size}-{max_len}-{config.padding}-{config.truncating}"
    held = f"{config.val_split}-{config.val_size}-seed{seed}"
    return IMDBData(
        mapped(full_train.take(train_rows), arrays / f"{shape}-train-{held}.npy"),
        mapped(full_train.take(val_rows), arrays / f"{shape}-val-{held}.npy"),
        mapped(test, arrays / f"{shape}-test.npy"),
        vocabulary,
    )


def movie_split_rows(movies: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) rows with whole movies held out: movies in a seeded shuffle are taken
    until they hold at least ``size`` reviews. IMDB's test reviews are of other movies than its
    training reviews; a random split puts reviews of the same movie on both sides, and its
    accuracy then flatters the model (names and plots recur)."""
    if (movies < 0).any():
        raise UserError(
            "val-split movie needs the archive's urls_pos.txt/urls_neg.txt (which movie each "
            "review is about); this copy lacks them: use `val_split` random"
        )
    order = np.random.default_rng(seed).permutation(int(movies.max()) + 1)
    reviews_per_movie = np.bincount(movies, minlength=len(order))
    taken = order[: int(np.searchsorted(np.cumsum(reviews_per_movie[order]), size)) + 1]
    held_out = np.isin(movies, taken)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


# 5. The source: what elman train/evaluate/predict call ------------------------------------------


def read(settings: IMDBConfig, encoding: Encoding, log: Log = print) -> Splits:
    imdb = load_imdb(
        settings,
        vocab_size=encoding.vocab_size,
        max_len=encoding.max_len,
        seed=encoding.seed,
        log=log,
    )
    return Splits(imdb.train, imdb.val, imdb.test, Learned(list(LABELS), imdb.vocabulary))


def evaluation(fitted: Fitted, path: Path | None, log: Log = print) -> Split:
    """The test reviews of the archive at ``path`` (default: the one the model was trained on),
    encoded with the model's vocabulary, which must be the archive's."""
    settings = fitted.settings
    settings = replace(settings, data=str(path) if path else settings.data)
    splits = read(settings, fitted.encoding, log)
    if splits.learned.vocabulary != fitted.learned.vocabulary:
        raise UserError(
            "the vocabulary saved with the model does not match the reviews in this archive; "
            "use the archive the model was trained on"
        )
    return splits.test


LABELS = ("negative", "positive")
# ``--preset best``: the recipe found by ablation on a validation split of other movies (see the
# README's "How good can a simple RNN get?"). Still one plain Elman matrix per direction.
BEST = {
    **TEXT_BEST,
    # chosen on whole movies held out (val_split movie), then trained on all 25,000 reviews
    "data": {"val_split": "movie", "val_size": 0},
}


def examples(fitted: Fitted, count: int = 6) -> list[dict]:
    """A few test reviews (half positive, half negative) from the model's IMDB archive, when
    it is at hand (the archive lists its test reviews first: this reads only the start)."""
    data = fitted.settings.data
    if not data or not Path(data).is_file():
        return []
    found: dict[str, list[dict]] = {"pos": [], "neg": []}
    try:
        with tarfile.open(data) as archive:
            for member in archive:
                parts = member.name.split("/")
                if len(parts) == 4 and parts[1] == "test" and parts[2] in found:
                    if len(found[parts[2]]) < count // 2 and member.isfile():
                        text = archive.extractfile(member).read().decode("utf-8", "replace")
                        if len(text) < 1500:  # short ones read well on a page
                            label = "positive" if parts[2] == "pos" else "negative"
                            found[parts[2]].append({"text": text, "label": label})
                if all(len(v) >= count // 2 for v in found.values()):
                    break
    except (OSError, tarfile.TarError):
        return []
    return [review for pair in zip(found["pos"], found["neg"], strict=False) for review in pair]


SOURCE = Source(
    name="imdb",
    config=IMDBConfig,
    network="words",
    read=read,
    evaluation=evaluation,
    inputs=text_inputs,
    classes=LABELS,
    help="IMDB sentiment (Large Movie Review Dataset)",
    description="Train on 20,000 IMDB reviews, validate on 5,000, test on 25,000.",
    recipes={"best": BEST},
    examples=examples,
    recipe_help={
        "reference": "the book's SimpleRNN(32) over 500 words, RMSprop",
        "best": "the reference, reading both directions over the words only, max and mean "
        "pooling of the states, 4 epochs with the rate halved after each (chosen on other "
        "movies held out), trained on all 25,000 training reviews",
    },
)
