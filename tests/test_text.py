import numpy as np
import pytest

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
