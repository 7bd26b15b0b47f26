"""What a trained model gets right and wrong on a test split, beyond one accuracy number.

Classification: the confusion matrix and each class's precision, recall and F1.
Forecasting: mean squared and absolute error in the data's own units, next to the naive forecast
that repeats the last value (a forecaster that cannot beat it has learnt nothing).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from elman.data.split import Split
from elman.train import predict_outputs


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def per_class_scores(matrix: np.ndarray, names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class (0 where undefined, as scikit-learn)."""
    scores = []
    for i, name in enumerate(names):
        hits, predicted, actual = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(
            {
                "class": name,
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "support": int(actual),
            }
        )
    return scores


def predicted_classes(
    model: nn.Module, split: Split, batch_size: int = 1000, logits: Tensor | None = None
) -> np.ndarray:
    if logits is None:
        logits = predict_outputs(model, split.x, batch_size)
    return (logits > 0).long().numpy() if logits.dim() == 1 else logits.argmax(-1).numpy()


def classification_report(
    model: nn.Module,
    split: Split,
    names: list[str],
    batch_size: int = 1000,
    logits: Tensor | None = None,
) -> dict:
    """Accuracy, macro F1, per-class scores and the confusion matrix on ``split`` (``logits``:
    the model's outputs for it, when the caller has them already)."""
    true = split.y.astype(np.int64)
    predicted = predicted_classes(model, split, batch_size, logits)
    matrix = confusion_matrix(true, predicted, len(names))
    scores = per_class_scores(matrix, names)
    return {
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "macro_f1": float(np.mean([score["f1"] for score in scores])),
        "per_class": scores,
        "confusion_matrix": matrix.tolist(),
    }


def format_classification(report: dict) -> str:
    """The report as a table of scores, then the confusion matrix (rows true, columns predicted)."""
    names = [score["class"] for score in report["per_class"]]
    width = max(8, *(len(name) for name in names))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for s in report["per_class"]:
        lines.append(
            f"{s['class']:<{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  "
            f"{s['f1']:5.4f}  {s['support']:7d}"
        )
    lines.append(f"accuracy {report['accuracy']:.4f} - macro F1 {report['macro_f1']:.4f}")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    counts = [len(str(v)) for row in report["confusion_matrix"] for v in row]
    cell = max(5, *counts, *(len(name) for name in names)) + 1
    lines.append(" " * width + "".join(f"{name:>{cell}}" for name in names))
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def forecast_report(model: nn.Module, split: Split, batch_size: int = 1000) -> dict:
    """MSE and MAE of the one-step forecasts in the data's units, and of the last-value baseline.

    ``split.x`` holds each series' present values first; ``split.y`` the standardised next value
    at the same position (NaN where none), so the naive forecast of ``y[:, t]`` is ``x[:, t]``."""
    std, mean = model.std.numpy(), model.mean.numpy()
    predictions = predict_outputs(model, split.x, batch_size).numpy()
    has_target = ~np.isnan(split.y)
    target = split.y * std + mean
    errors = {
        "model": (predictions * std + mean - target)[has_target],
        "last_value": (split.x - target)[has_target],
    }
    report = {"targets": int(has_target.sum())}
    for name, error in errors.items():
        report[f"{name}_mse"] = float(np.mean(error**2))
        report[f"{name}_mae"] = float(np.mean(np.abs(error)))
    return report


def format_forecast(report: dict) -> str:
    return (
        f"one-step forecasts of {report['targets']} values: MSE {report['model_mse']:.4g} - "
        f"MAE {report['model_mae']:.4g} (repeating the last value: MSE "
        f"{report['last_value_mse']:.4g} - MAE {report['last_value_mae']:.4g})"
    )
