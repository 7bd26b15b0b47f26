"""Reading an input step by step (``elman.analysis.explain``) and searching the test data's states
(``elman.analysis.matches``): each step's probability against the model run on the input cut
there, the influence curve against autograd's Jacobian and against the exact analysis, the search
against brute force; on a model trained on real reviews and on numeric models of every shape."""

import numpy as np
import pytest
import torch

from elman.analysis.explain import influence, read_text, read_values, step_states
from elman.analysis.gradients import gradient_flow
from elman.analysis.matches import StateIndex
from elman.config import RunConfig, SequenceConfig
from elman.data.series import SeriesConfig
from elman.data.text import not_words, tokenize
from elman.errors import UserError
from elman.inference import TrainedSequenceModel, load
from elman.models import SequenceModel

REVIEW = "A wonderful film: the acting is superb, though the middle drags. I loved the ending!"


@pytest.fixture(scope="module")
def trained(subset_model):
    return load(subset_model)


def test_each_step_is_the_model_on_the_text_cut_there(trained):
    reading = read_text(trained, REVIEW)
    assert reading.words == tokenize(REVIEW) and not any(reading.unknown) and not reading.notes
    for t in (0, 5, len(reading.words) - 1):
        cut = " ".join(reading.words[: t + 1])
        assert reading.probabilities[t] == pytest.approx(
            float(trained.predict_proba(cut)), abs=1e-6
        )
    assert reading.target == "positive"
    assert reading.probabilities[-1] == pytest.approx(
        float(trained.predict_proba(REVIEW)), abs=1e-6
    )


def test_influence_is_the_exact_analysis_of_the_last_state(trained):
    """For the reference model, ‖∂h_T/∂x_t‖ of ``elman analyze gradients`` (a reverse pass per
    unit, one step at a time), after the start token."""
    reading = read_text(trained, REVIEW)
    ids = torch.from_numpy(trained.encode([REVIEW]))[0]
    exact = gradient_flow(trained.model, ids)["last"]
    np.testing.assert_allclose(reading.influence, exact[1:], rtol=1e-4, atol=1e-9)
    long = read_text(trained, " ".join([REVIEW] * 10))  # 150 words: the first is forgotten
    assert long.influence[-1] > 100 * long.influence[0]


def test_what_was_not_read_is_said(trained):
    long = " ".join([REVIEW] * 12) + " zzqxvbl 😀 🎬"
    reading = read_text(trained, long)
    words = len(tokenize(long))
    assert len(reading.words) == 150 and reading.words == tokenize(long)[-150:]
    assert reading.notes[0] == (
        f"the first {words - 150:,} words were not read: the model keeps the last 150"
    )
    assert reading.unknown[-1] and "1 word is not in the model's vocabulary" in reading.notes[1]
    assert reading.notes[2] == "2 symbols are not words and were skipped: 😀 🎬"
    assert not_words("don't stop — 100% ✓") == ["—", "✓"]
    with pytest.raises(UserError, match="none of its 3 words is among the"):
        read_text(trained, "Это хороший фильм")
    with pytest.raises(UserError, match="no words"):
        read_text(trained, " !! ")


@pytest.mark.parametrize(
    "settings",
    [
        {"architecture": "rnn"},
        {"architecture": "rnn", "bidirectional": True, "pooling": "max+mean"},
        {"architecture": "rnn", "layers": 2, "pooling": "mean"},
        {"architecture": "esn", "time_scales": 2, "leak_rate": 0.3, "pooling": "max+mean"},
        {"architecture": "gru", "pooling": "max"},
    ],
)
def test_numbers_every_shape_of_model(settings):
    torch.manual_seed(0)
    config = RunConfig(
        SequenceConfig(input_size=2, hidden_size=6, **settings),
        SeriesConfig(),
        source="series",
        classes=["a", "b", "c"],
    )
    model = SequenceModel(config.model, classes=3).eval()
    trained = TrainedSequenceModel(model, config)
    values = torch.randn(9, 2).numpy()
    values[3] = np.nan  # a missing step: skipped, and said
    reading = read_values(trained, values)
    present = values[~np.isnan(values).any(-1)]
    assert len(reading.words) == 8 and reading.notes == ["1 steps without values skipped"]
    column = trained.config.classes.index(reading.target)
    for t in range(8):
        expected = trained.predict_proba(present[None, : t + 1])[0, column]
        assert reading.probabilities[t] == pytest.approx(float(expected), abs=1e-6)
    assert reading.target == trained.predict(values[None])[0].label
    # the influence against autograd's Jacobian of what the dense layer reads
    x = torch.from_numpy(present[None])
    jacobian = torch.autograd.functional.jacobian(lambda v: model.features(v)[0], x)
    expected = jacobian[:, 0].pow(2).sum(dim=(0, 2)).sqrt()
    np.testing.assert_allclose(influence(model, x), expected.numpy(), rtol=1e-4, atol=1e-8)
    states = np.array(reading.states)
    assert states.shape == (8, model.rnn.hidden_size)
    np.testing.assert_allclose(states, step_states(model, x)[0].numpy())


def test_a_forecaster_gives_its_forecast_after_each_step():
    torch.manual_seed(0)
    config = RunConfig(
        SequenceConfig(input_size=2, hidden_size=6, task="forecast"),
        SeriesConfig(),
        source="series",
    )
    model = SequenceModel(config.model).eval()
    model.mean.fill_(10.0)
    model.std.fill_(2.0)
    trained = TrainedSequenceModel(model, config)
    values = (10 + 2 * torch.randn(7, 2)).numpy()
    reading = read_values(trained, values)
    assert reading.probabilities == [] and reading.changes() == []
    assert np.array(reading.forecasts).shape == (7, 2)
    for t in (0, 3, 6):  # after step t: the forecast of the series cut there
        expected = trained.forecast(values[None, : t + 1])[0]
        np.testing.assert_allclose(reading.forecasts[t], expected, rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(values[None])
    jacobian = torch.autograd.functional.jacobian(lambda v: model.features(v)[0, -1], x)
    expected = jacobian[:, 0].pow(2).sum(dim=(0, 2)).sqrt()
    np.testing.assert_allclose(reading.influence, expected.numpy(), rtol=1e-4, atol=1e-8)


def test_the_search_finds_a_planted_pattern_and_agrees_with_brute_force(trained, subset_model):
    from elman.data import SOURCES

    test = SOURCES["imdb"].evaluation(trained.fitted, None, lambda _: None)
    index = StateIndex.build(trained, test.x, test.y, limit=200)
    assert len(index.labels) == 200 and set(index.labels) == {"negative", "positive"}
    sample, start, units = 17, int(np.argmax(index.read[17])) + 20, [1, 4, 9]
    pattern = index.states[sample, start : start + 4][:, units].astype(np.float32)
    found = index.search(pattern, units)
    assert found[0]["sample"] == sample and found[0]["distance"] == 0
    assert found[0]["span"] == " ".join(index.words[i] for i in span_ids(index, sample, start))
    # brute force: every window of every sample, padding excluded
    rng = np.random.default_rng(0)
    query = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    best = {}
    for n in range(len(index.labels)):
        for s in range(index.states.shape[1] - 2):
            if index.read[n, s : s + 3].all():
                window = index.states[n, s : s + 3][:, [0, 5]].astype(np.float32)
                d = float(((window - query) ** 2).mean())
                best[n] = min(best.get(n, np.inf), d)
    expected = sorted(best, key=best.get)[:8]
    got = index.search(query, [0, 5])
    assert [m["sample"] for m in got] == expected
    assert [m["distance"] for m in got] == pytest.approx([best[n] for n in expected], abs=1e-5)


def span_ids(index: StateIndex, sample: int, start: int) -> list[int]:
    return list(index.ids[sample, start : start + 4])
