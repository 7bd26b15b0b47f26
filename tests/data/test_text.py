import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elman.data.text import OOV, PAD, START, Vocabulary, pad_sequences, rank_words, tokenize


def test_tokenize_lowercases_strips_breaks_and_punctuation():
    text = "This film was GREAT!<br /><br />I didn't expect it... 10/10, the 90's vibe."
    assert tokenize(text) == [
        "this",
        "film",
        "was",
        "great",
        "i",
        "didn't",
        "expect",
        "it",
        "10",
        "10",
        "the",
        "90's",
        "vibe",
    ]
    assert tokenize("") == [] and tokenize("  \n\t ") == []
    assert tokenize("Café déjà-vu") == ["café", "déjà", "vu"]


def test_rank_words_by_frequency_then_alphabet():
    assert rank_words([["b", "a", "c"], ["c", "b"], ["c"]]) == ["c", "b", "a"]
    assert rank_words([["y", "x"]]) == ["x", "y"]


def test_vocabulary_reserves_pad_start_oov():
    vocabulary = Vocabulary.from_ranked(["the", "film", "was"], size=5)
    assert vocabulary.words == ("<pad>", "<start>", "<oov>", "the", "film")
    assert vocabulary.encode(["the", "film", "was", "zzz"]) == [START, 3, 4, OOV, OOV]
    assert PAD == 0
    with pytest.raises(ValueError, match="reserved"):
        Vocabulary.from_ranked(["a"], size=3)


def test_pad_sequences_keras_defaults_keep_the_end():
    ids, lengths = pad_sequences([[1, 5, 6, 7], [1, 8]], max_len=3)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [0, 1, 8]])
    np.testing.assert_array_equal(lengths, [3, 2])
    ids, _ = pad_sequences([[1, 5, 6, 7], [1, 8]], max_len=3, padding="post", truncating="post")
    np.testing.assert_array_equal(ids, [[1, 5, 6], [1, 8, 0]])
    ids, lengths = pad_sequences([[]], max_len=2)
    np.testing.assert_array_equal(ids, [[0, 0]])
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[1]], max_len=0)
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[1]], max_len=2, padding="middle")


@settings(max_examples=300, deadline=None)
@given(text=st.text(), vocab_size=st.integers(4, 50), max_len=st.integers(1, 30))
def test_any_string_encodes_within_vocabulary_and_length(text, vocab_size, max_len):
    vocabulary = Vocabulary.from_ranked(["the", "a", "film", "é", "don't", "10"], vocab_size)
    ids, lengths = pad_sequences([vocabulary.encode(tokenize(text))], max_len)
    assert ids.shape == (1, max_len)
    assert ids.min() >= 0 and ids.max() < len(vocabulary)
    assert 1 <= lengths[0] <= max_len


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(), min_size=0, max_size=200))
def test_tokens_are_lowercase_words_without_markup(text):
    for token in tokenize(text):
        assert token == token.lower() and token.strip() == token and token
        assert "<" not in token and " " not in token
