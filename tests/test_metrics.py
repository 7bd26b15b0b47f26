"""Per-class scores, the confusion matrix, the task losses, and saved numeric models."""

import numpy as np
import torch
import torch.nn.functional as F

from elman.config import RunConfig
from elman.data.series import SeriesConfig
from elman.inference import load, save_bundle
from elman.metrics import confusion_matrix, per_class_scores
from elman.models import SequenceConfig, SequenceModel
from elman.train import loss_and_metric


def test_scores_match_their_definitions():
    rng = np.random.default_rng(0)
    true, predicted = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    predicted[:200] = true[:200]
    matrix = confusion_matrix(true, predicted, 4)
    assert matrix.sum() == 500 and np.trace(matrix) == np.sum(true == predicted)
    for c, score in enumerate(per_class_scores(matrix, ["a", "b", "c", "d"])):
        tp = np.sum((predicted == c) & (true == c))
        precision, recall = tp / np.sum(predicted == c), tp / np.sum(true == c)
        assert np.isclose(score["precision"], precision) and np.isclose(score["recall"], recall)
        assert np.isclose(score["f1"], 2 * precision * recall / (precision + recall))
        assert score["support"] == np.sum(true == c)


def test_task_losses():
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    loss, accuracy = loss_and_metric("multiclass", logits, y)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))
    assert accuracy == (logits.argmax(1) == y).float().mean()
    predictions, targets = torch.randn(2, 4, 1), torch.randn(2, 4, 1)
    targets[1, 2:] = float("nan")  # no target there: not counted
    loss, mae = loss_and_metric("forecast", predictions, targets)
    kept = ~torch.isnan(targets)
    torch.testing.assert_close(loss, ((predictions - targets)[kept] ** 2).mean())
    torch.testing.assert_close(mae, (predictions - targets)[kept].abs().mean())


def test_saved_sequence_model_predicts_as_in_memory(tmp_path):
    torch.manual_seed(0)
    config = RunConfig(
        SequenceConfig(input_size=3, hidden_size=6),
        SeriesConfig(),
        source="series",
        classes=["w", "x", "y", "z"],
    )
    model = SequenceModel(config.model, classes=4)
    model.mean.copy_(torch.tensor([1.0, 2.0, 3.0]))  # the standardisation travels with it
    model.std.copy_(torch.tensor([2.0, 0.5, 1.0]))
    save_bundle(tmp_path, model, None, config, [], {})
    loaded = load(tmp_path)
    values = np.random.default_rng(0).normal(size=(5, 9, 3)).astype(np.float32)
    values[0, 6:] = np.nan
    expected = torch.softmax(model.eval()(torch.from_numpy(values)), -1).detach().numpy()
    np.testing.assert_allclose(loaded.predict_proba(values), expected, rtol=1e-6)
    assert [p.label for p in loaded.predict(values)] == [
        config.classes[i] for i in expected.argmax(1)
    ]
