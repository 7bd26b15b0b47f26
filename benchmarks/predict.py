"""Batch prediction from raw text with a saved model: the 25,000 IMDB test reviews, through
``elman.load(DIR).predict_proba(texts)`` (tokenize, encode, pad, infer), and the model alone;
beside it the reference tokenizer, and the ONNX export run by onnxruntime (reference
architecture only; its probabilities are checked against elman's).

    python benchmarks/predict.py --model runs/imdb --data ../shared/data/aclImdb.tar.gz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import elman
from elman.data.imdb import read_reviews, resolve_source
from elman.data.text import encode_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


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
    data = classifier.config.data
    reference_started = time.perf_counter()
    reference = encode_texts(
        test.texts, classifier.vocabulary, classifier.config.model.max_len, data.padding,
        data.truncating,
    )  # fmt: skip
    reference_seconds = time.perf_counter() - reference_started
    assert np.array_equal(reference, ids), "the compiled text path differs from the reference"
    print(provenance() + "\n")
    print(f"{n:,} test reviews, {torch.get_num_threads()} threads, accuracy {accuracy:.4f}\n")
    print("| path | reviews/s |\n|---|---:|")
    print(f"| text -> prediction (`predict_proba`) | {n / (finished - encoded):,.0f} |")
    print(f"| text -> ids (compiled tokenizer) | {n / (encoded - started):,.0f} |")
    print(f"| text -> ids (reference tokenizer) | {n / reference_seconds:,.0f} |")
    print(f"| ids -> prediction (the model alone) | {n / model_seconds:,.0f} |")
    onnx_speed(args.model, classifier, ids, probabilities)


def onnx_speed(folder: str, classifier, ids: np.ndarray, probabilities: np.ndarray) -> None:
    """The exported graph under onnxruntime: reviews/s from ids, and its largest difference."""
    import tempfile

    import onnxruntime

    from elman.errors import UserError
    from elman.export import export_onnx

    with tempfile.TemporaryDirectory() as out:
        try:
            path = export_onnx(folder, f"{out}/model.onnx")
        except UserError as error:
            print(f"| onnxruntime: not exported ({error}) | |")
            return
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(None, {"ids": ids[:1000]})
        started = time.perf_counter()
        outputs = np.concatenate(
            [session.run(None, {"ids": ids[i : i + 1000]})[0] for i in range(0, len(ids), 1000)]
        )
        seconds = time.perf_counter() - started
    difference = float(np.abs(outputs - probabilities).max())
    print(
        f"| ids -> prediction (onnxruntime; largest difference from elman {difference:.1e}) "
        f"| {len(ids) / seconds:,.0f} |"
    )


if __name__ == "__main__":
    main()
