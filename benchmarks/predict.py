"""Batch prediction from raw text with a saved model: the 25,000 IMDB test reviews, through
``elman.load(DIR).predict_proba(texts)`` (tokenize, encode, pad, infer), and the model alone.

    python benchmarks/predict.py --model runs/imdb --data ../shared/data/aclImdb.tar.gz
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import elman
from elman.data.imdb import read_reviews, resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder written by elman train")
    parser.add_argument("--data", help="aclImdb archive (default: $ELMAN_DATA or download)")
    args = parser.parse_args()
    classifier = elman.load(args.model)
    test = read_reviews(resolve_source(args.data))["test"]
    classifier.predict_proba(test.texts[:1000])  # warm-up: compiled kernels
    started = time.perf_counter()
    ids = classifier.encode(test.texts)
    encoded = time.perf_counter()
    probabilities = classifier.predict_proba(test.texts)
    finished = time.perf_counter()
    with torch.no_grad():
        model_started = time.perf_counter()
        for i in range(0, len(ids), 1000):
            classifier.model(torch.from_numpy(ids[i : i + 1000]))
        model_seconds = time.perf_counter() - model_started
    accuracy = float(np.mean((probabilities > 0.5) == test.labels))
    n = len(test.texts)
    print(f"{n:,} test reviews, {torch.get_num_threads()} threads, accuracy {accuracy:.4f}")
    print(f"  text -> prediction: {n / (finished - encoded):>9,.0f} reviews/s")
    print(f"  text -> ids only:   {n / (encoded - started):>9,.0f} reviews/s")
    print(f"  ids -> prediction:  {n / model_seconds:>9,.0f} reviews/s")


if __name__ == "__main__":
    main()
