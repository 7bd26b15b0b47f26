"""The compiled text path gives the reference's ids: random texts (hypothesis) and real ones."""

import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elman.data.fast_text import FastEncoder
from elman.data.text import Vocabulary, encode_texts, pad_sequences, tokenize
from elman.errors import UserError

WORDS = ["the", "film", "don't", "90's", "café", "naïve", "ß", "x_y", "½", "señor", "İstanbul"]
VOCABULARY = Vocabulary.from_ranked(WORDS + [f"w{i}" for i in range(40)], 40)
PIECES = st.sampled_from(
    WORDS + ["<br />", "<BR/>", "<br>", "'", "''", " ", "\n", ".", ",", "_", "-", "é", "É",
             "Σ", "ς", "\u0301", "e\u0301", "²", "١٢", "😀", "\x00", "ÿ", "Ÿ", "'s", "FILM"]
)  # fmt: skip
TEXTS = st.lists(st.lists(PIECES, max_size=30).map("".join), min_size=1, max_size=8)


def reference(texts, max_len, padding, truncating):
    sequences = [VOCABULARY.encode(tokenize(text)) for text in texts]
    return pad_sequences(sequences, max_len, padding, truncating)[0]


@settings(max_examples=300, deadline=None)
@given(
    texts=TEXTS,
    max_len=st.integers(1, 12),
    padding=st.sampled_from(["pre", "post"]),
    truncating=st.sampled_from(["pre", "post"]),
)
def test_the_same_ids_as_the_reference_on_random_text(texts, max_len, padding, truncating):
    ids, counts, known = FastEncoder(VOCABULARY).encode(texts, max_len, padding, truncating)
    np.testing.assert_array_equal(ids, reference(texts, max_len, padding, truncating))
    assert counts.tolist() == [len(tokenize(text)) for text in texts]


def test_the_same_ids_refusals_and_notes_on_real_reviews(real_archive):
    texts = []
    with tarfile.open(real_archive) as archive:
        for member in archive:
            if "/test/" in member.name and member.isfile():
                texts.append(archive.extractfile(member).read().decode("utf-8", "replace"))
            if len(texts) == 3000:
                break
    vocabulary = Vocabulary.from_ranked(sorted({w for t in texts[:500] for w in tokenize(t)}), 5000)
    fast = FastEncoder(vocabulary)
    for padding, truncating in (("pre", "pre"), ("post", "post")):
        fast_notes, notes = [], []
        np.testing.assert_array_equal(
            fast.encode_texts(texts, 200, padding, truncating, fast_notes),
            encode_texts(texts, vocabulary, 200, padding, truncating, notes),
        )
        assert fast_notes == notes and len(notes) > 100
    for bad in (["a fine film", "  ...  "], ["a fine film", "zzqv qqxz"]):
        with pytest.raises(UserError) as expected:
            encode_texts(bad, vocabulary, 50)
        with pytest.raises(UserError, match=str(expected.value).split(" (")[0]):
            fast.encode_texts(bad, 50)


def test_the_corpus_is_ranked_and_encoded_as_the_reference_does(subset_archive):
    """Real reviews plus some beyond Latin-1 (read the reference way), and words tied in
    frequency (ranked alphabetically)."""
    from elman.data.imdb import Reviews, encode_reviews, encode_reviews_reference, read_reviews

    reviews = read_reviews(subset_archive)
    extra = ["İstanbul naïve café ½ x_y", "Σίσυφος ς ς don't", "zeta alpha", "alpha zeta 😀"]
    train = reviews["train"]
    reviews["train"] = Reviews(
        texts=train.texts + extra,
        labels=np.concatenate([train.labels, [1, 0, 1, 0]]),
        movies=np.concatenate([train.movies, [-1] * 4]),
    )
    fast, reference = encode_reviews(reviews), encode_reviews_reference(reviews)
    assert fast.ranked_words == reference.ranked_words
    for split in ("train", "test"):
        np.testing.assert_array_equal(fast.ids[split], reference.ids[split])
        np.testing.assert_array_equal(fast.offsets[split], reference.offsets[split])
        assert fast.ids[split].dtype == reference.ids[split].dtype
