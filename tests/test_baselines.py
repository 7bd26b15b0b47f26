"""The baselines beside every score: a bag of words on real reviews, 1-NN held to a brute-force
search, and the line that says when the RNN does not beat them."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from elman.baselines import baseline_scores, verdict, word_counts
from elman.data.split import Split


def test_word_counts_are_the_bag_of_words_of_real_reviews(small_real):
    train, _ = small_real
    ids = np.asarray(train.x[:50]).copy()
    ids[7] = 0  # a row of padding alone: no word
    matrix = word_counts(ids, 2000)
    by_hand = np.zeros((50, 2000), np.float32)
    for row, review in enumerate(ids):
        for word in review[review >= 3]:  # padding, start and out-of-vocabulary are not words
            by_hand[row, word] += 1
    np.testing.assert_array_equal(matrix.toarray(), by_hand)
    # The very arrays scipy builds from the (row, id) pairs, duplicates summed: the baseline
    # fits on the same matrix as before this faster build.
    canonical = csr_matrix(by_hand)
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(matrix, part), getattr(canonical, part))


def test_tfidf_logistic_regression_reads_real_reviews(small_real):
    """640 real reviews of 40 words: the bag of words does clearly better than the majority
    class (0.77 on this machine; the majority, what the labels say)."""
    train, val = small_real
    scores = baseline_scores(train, val, vocab_size=2000)
    majority = np.bincount(train.y.astype(int)).argmax()
    assert scores["majority"] == np.mean(val.y == majority)
    assert scores["tfidf_logistic"] > max(scores["majority"], 1 - scores["majority"]) + 0.1


def _series(n: int, steps: int, seed: int) -> Split:
    """Waves of two kinds and unequal lengths, with gaps (NaN), values of scale 10 (F = 2)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    t = np.linspace(0, 4 * np.pi, steps)
    wave = np.sin(t + rng.uniform(0, 2 * np.pi, (n, 1)))
    values = np.where(labels[:, None] == 1, np.sign(wave), wave)
    x = np.stack([values, rng.normal(0, 1, values.shape)], -1).astype(np.float32) * 10
    x[rng.random(x.shape) < 0.05] = np.nan
    return Split(x, labels, np.full(n, steps))


def test_nearest_neighbour_is_the_brute_force_search_on_standardised_values():
    train, test = _series(60, 30, 0), _series(40, 36, 1)  # (the test series are longer)
    mean, std = np.nanmean(train.x, (0, 1)), np.nanstd(train.x, (0, 1))
    scores = baseline_scores(train, test, mean=mean, std=std)
    width = 36 * 2
    flat = [
        np.pad(np.nan_to_num((s.x - mean) / std).reshape(len(s.x), -1), ((0, 0), (0, width - w)))
        for s, w in ((train, 30 * 2), (test, width))
    ]
    distances = ((flat[1][:, None, :] - flat[0][None, :, :]) ** 2).sum(-1)
    expected = np.mean(train.y[distances.argmin(1)] == test.y)
    assert scores["nearest_neighbour"] == pytest.approx(expected)
    assert set(scores) == {"majority", "nearest_neighbour"}


def test_the_verdict_says_when_the_rnn_does_not_beat_a_baseline():
    scores = {"majority": 0.5, "tfidf_logistic": 0.8879}
    assert verdict(0.89, scores) == (
        "Baselines on the same test samples: majority class 0.5000, "
        "tf-idf logistic regression 0.8879"
    )
    lines = verdict(0.8527, scores).splitlines()
    assert lines[1] == (
        "The RNN (0.8527) does not beat the tf-idf logistic regression (0.8879) on this test set"
    )
