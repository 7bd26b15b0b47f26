"""Baselines beside every score: what a trivial model and a classic one get on the same split.

A classifier that ``elman train`` trains is scored next to:

- the majority class of the training split (what always answering the commonest class gets);
- text: a logistic regression on the tf-idf weights of the same token ids the RNN reads (its
  vocabulary, its length), the classic strong baseline for reviews;
- numbers (series, speech): 1-nearest-neighbour with Euclidean distance on the values
  standardised with the training split's statistics (the UCR archive's reference baseline),
  a missing step read as the mean.

Both are fitted on the training split alone, with their libraries' defaults (nothing is chosen,
so the validation split is not needed), and tested on the run's test split. Forecasting has its
own baseline already (repeating the last value, ``elman.metrics``).
"""

from __future__ import annotations

import numpy as np

from elman.data.split import Split

RESERVED_IDS = 3  # padding, start and out-of-vocabulary (``elman.data.text``): not words
NAMES = {
    "majority": "majority class",
    "tfidf_logistic": "tf-idf logistic regression",
    "nearest_neighbour": "1-nearest-neighbour (Euclidean, standardised)",
}


def baseline_scores(
    train: Split,
    test: Split,
    vocab_size: int | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> dict[str, float]:
    """Test accuracy of each baseline: ``majority`` and, for token ids (``vocab_size`` given),
    ``tfidf_logistic``, else ``nearest_neighbour`` on values (N, T, F) standardised with the
    training split's ``mean`` and ``std`` (F,)."""
    majority = np.bincount(np.asarray(train.y, np.int64)).argmax()
    scores = {"majority": float(np.mean(test.y == majority))}
    if vocab_size is not None:
        scores["tfidf_logistic"] = _tfidf_logistic(train, test, vocab_size)
    else:
        scores["nearest_neighbour"] = _nearest_neighbour(train, test, mean, std)
    return scores


def _tfidf_logistic(train: Split, test: Split, vocab_size: int) -> float:
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    tfidf = TfidfTransformer(sublinear_tf=True)
    features = tfidf.fit_transform(word_counts(train.x, vocab_size))
    classifier = LogisticRegression(max_iter=1000).fit(features, train.y)
    predicted = classifier.predict(tfidf.transform(word_counts(test.x, vocab_size)))
    return float(np.mean(predicted == test.y))


def word_counts(ids: np.ndarray, vocab_size: int):
    """Token ids (N, T) as a sparse (N, vocab_size) matrix of word counts (a bag of words; the
    reserved ids left out), its column indices sorted in each row.

    Each row's ids sorted, a word's count is the length of its run: the reserved ids (the
    smallest) sort to the front, so a run ends where the next one in its row begins, or at
    the row's end. (Twice as fast as letting scipy sum a (row, id) list's duplicates.)"""
    from scipy.sparse import csr_matrix

    ids = np.sort(np.asarray(ids, np.int64), axis=1)
    first = ids >= RESERVED_IDS  # -> the first id of each run of one word
    first[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    rows, starts = np.nonzero(first)
    same_row = np.append(rows[1:] == rows[:-1], False)
    ends = np.where(same_row, np.append(starts[1:], 0), ids.shape[1])
    indptr = np.concatenate([[0], np.cumsum(first.sum(1))])
    counts = (ends - starts).astype(np.float32)
    return csr_matrix((counts, ids[rows, starts], indptr), shape=(len(ids), vocab_size))


def _nearest_neighbour(
    train: Split, test: Split, mean: np.ndarray | None, std: np.ndarray | None
) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    def flat(split: Split) -> np.ndarray:
        values = np.asarray(split.x, np.float32)
        if mean is not None and std is not None:
            values = (values - mean) / std
        return np.nan_to_num(values, nan=0.0).reshape(len(values), -1)

    train_x, test_x = flat(train), flat(test)
    width = max(train_x.shape[1], test_x.shape[1])  # (test series may be longer or shorter)
    train_x, test_x = (np.pad(v, ((0, 0), (0, width - v.shape[1]))) for v in (train_x, test_x))
    classifier = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train_x, train.y)
    return float(np.mean(classifier.predict(test_x) == test.y))


def verdict(accuracy: float, scores: dict[str, float]) -> str:
    """The baselines in one line, and a second when the model does not beat the best of them."""
    line = "Baselines on the same test samples: " + ", ".join(
        f"{NAMES[name]} {score:.4f}" for name, score in scores.items()
    )
    best = max(scores, key=scores.__getitem__)
    if accuracy <= scores[best]:
        line += (
            f"\nThe RNN ({accuracy:.4f}) does not beat the {NAMES[best]} ({scores[best]:.4f}) "
            "on this test set"
        )
    return line
