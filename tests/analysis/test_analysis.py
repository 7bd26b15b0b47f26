"""The analyses on small models: exact against brute force, files written, commands wired."""

import json

import numpy as np
import pytest
import torch

from conftest import run_elman, save_small_model
from elman.analysis.cells import hidden, step_function
from elman.analysis.gradients import gradient_flow
from elman.analysis.memory import MemoryConfig, analyze_memory
from elman.inference import load
from elman.kernels.reference import reference_rnn
from elman.models import ModelConfig, ReviewClassifier


@pytest.fixture
def saved(tmp_path):
    save_small_model(tmp_path / "model", max_len=24)
    return tmp_path / "model"


def test_gradient_flow_equals_brute_force_jacobians():
    torch.manual_seed(0)
    model = ReviewClassifier(
        ModelConfig(vocab_size=20, max_len=12, hidden_size=5, embedding_dim=4)
    ).double()
    ids = torch.tensor([0, 0, 0, 1, 7, 3, 9, 12, 4, 4, 18, 2])
    flow = gradient_flow(model, ids)
    x = model.embedding(ids).detach()
    A, b = model.rnn.A.detach(), model.rnn.b.detach()

    def states(words):  # the review's 9 steps, after the 3 padding steps, as the model runs them
        full = torch.cat([x[:3], words])
        return reference_rnn(full[None], A, b, torch.zeros(1, 5, dtype=x.dtype), None, "tanh")[
            0, 3:
        ]

    jacobian = torch.autograd.functional.jacobian(states, x[3:])  # (9, H, 9, E)
    first = jacobian[:, :, 0, :].flatten(1).norm(dim=1)
    last = jacobian[-1].permute(1, 0, 2).flatten(1).norm(dim=1)
    np.testing.assert_allclose(flow["first"], first.numpy(), rtol=1e-10)
    np.testing.assert_allclose(flow["last"], last.numpy(), rtol=1e-10)
    W_h = model.rnn.A.detach()[:, :5]
    assert flow["spectral_radius"] == pytest.approx(float(torch.linalg.eigvals(W_h).abs().max()))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cells_replay_the_gated_layers_exactly(kind):
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(kind, vocab_size=20, max_len=10, hidden_size=5))
    ids = torch.randint(1, 20, (1, 10))
    x = model.embedding(ids)[0]
    step, state = step_function(model)
    for t in range(10):
        state = step(state, x[t : t + 1])
    torch.testing.assert_close(hidden(state)[0], model.rnn.states(x[None])[0, -1])


def test_analyze_gradients_command(saved, tmp_path):
    out = tmp_path / "analysis"
    result = run_elman(
        "analyze",
        "gradients",
        "--model",
        str(saved),
        "--out",
        str(out),
        "--review",
        "the film was great " * 5,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "gradients.json").read_text())
    assert set(record["curves"]) == {"rnn (trained)", "rnn (initialised)"}
    assert len(record["curves"]["rnn (trained)"]["first"]) == 21  # start token + 20 words
    assert (out / "gradients.png").stat().st_size > 10_000


def test_explain_ends_at_the_models_prediction(saved, tmp_path):
    from elman.analysis.explain import explain

    text = "The film was great, but the story was boring. Loved the acting!"
    reading = explain(saved, text, tmp_path / "explain")
    assert reading.words == [
        "the",
        "film",
        "was",
        "great",
        "but",
        "the",
        "story",
        "was",
        "boring",
        "loved",
        "the",
        "acting",
    ]
    assert reading.probabilities[-1] == pytest.approx(
        float(load(saved).predict_proba([text])[0]), abs=1e-6
    )
    assert sum(reading.changes()) == pytest.approx(
        reading.probabilities[-1] - reading.start_probability, abs=1e-6
    )
    page = (tmp_path / "explain" / "explain.html").read_text()
    assert page.count("<span") == 12 and "boring" in page
    assert (tmp_path / "explain" / "explain.png").stat().st_size > 10_000
    result = run_elman("explain", "--model", str(saved), "--out", str(tmp_path / "cli"), text)
    assert result.returncode == 0 and "P(positive) after the last word" in result.stdout


def test_memory_task_simple_rnn_recalls_at_a_short_lag(tmp_path):
    config = MemoryConfig(lags=(2,), layers=("rnn",), steps=300, test_size=500)
    table = analyze_memory(config, tmp_path, log=lambda _: None)
    assert table["rnn"][2] > 0.9  # chance is 0.125
    assert json.loads((tmp_path / "memory.json").read_text())["accuracy"]["rnn"]["2"] > 0.9
    assert "| 2 |" in (tmp_path / "memory.md").read_text()
    assert (tmp_path / "memory.png").exists()


@pytest.mark.slow
def test_language_model_on_real_unlabelled_reviews(real_archive, tmp_path):
    from elman.analysis.language_model import (
        LMConfig,
        load_language_model,
        next_words,
        train_language_model,
    )

    config = LMConfig(
        data=str(real_archive), reviews=400, val_reviews=100, vocab_size=500, epochs=2
    )
    metrics = train_language_model(config, tmp_path / "lm", log=lambda _: None)
    assert 1 < metrics["val_perplexity"] < metrics["unigram_perplexity"]  # context helps
    model, vocabulary = load_language_model(tmp_path / "lm")
    predictions = next_words(model, vocabulary, "the acting was really", k=5)
    assert len(predictions) == 5
    probabilities = [p for _, p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    assert all(word not in ("<pad>", "<start>", "<oov>") for word, _ in predictions)
    result = run_elman("lm", "next", "--model", str(tmp_path / "lm"), "the acting was")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 5
