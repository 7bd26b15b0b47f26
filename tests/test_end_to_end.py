"""The reference run on the real reviews: 3 epochs of the 322,113-parameter model, then the saved
folder used as a user would: evaluate and predict from the command line."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.report import machine

import elman
from conftest import run_elman
from elman.data.imdb import read_reviews
from elman.workflow import imdb_preset, train_imdb

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "results.md"


def _checked(*args, stdin=None):
    result = run_elman(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_reference_model_on_real_reviews(real_archive, real_cache, tmp_path):
    config = imdb_preset("rnn")
    config.data.data = str(real_archive)
    config.data.cache_dir = str(real_cache)
    lines = []
    trained = train_imdb(config, out_dir=tmp_path / "run", log=lines.append, progress=False)
    assert "Total params: 322,113" in "\n".join(lines)
    assert trained.metrics["test_acc"] >= 0.80, trained.metrics
    # The docs' reference figure is this run's, on the machine their table names (another CPU
    # rounds floats otherwise and trains along another path).
    table = RESULTS.read_text()
    named = re.search(r"; ([^;]+, \d+ cores); \d{4}-", table.splitlines()[0]).group(1)
    if named == machine():
        reference = next(line for line in table.splitlines() if "(the reference model" in line)
        assert f"**{trained.metrics['test_acc']:.4f}**" in reference, (reference, trained.metrics)
    # Beside it, the baselines on the same split (tf-idf logistic regression: 0.8879 here).
    baselines = json.loads((tmp_path / "run" / "metrics.json").read_text())["baselines"]
    assert baselines["majority"] == 0.5 and 0.86 < baselines["tfidf_logistic"] < 0.91
    beaten = trained.metrics["test_acc"] > baselines["tfidf_logistic"]
    assert beaten != any("does not beat the tf-idf logistic regression" in x for x in lines)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 3 and history[0]["val_acc"] > 0.7

    # The saved folder, re-evaluated from the command line, gives the same test accuracy.
    result = _checked("evaluate", "--model", str(tmp_path / "run"), "--cache-dir", str(real_cache))
    assert f"acc {trained.metrics['test_acc']:.4f}" in result.stdout

    # Loaded back, it predicts raw test reviews exactly as the in-memory model does.
    texts = read_reviews(real_archive)["test"].texts[::500]  # 50 reviews, both labels
    loaded = elman.load(tmp_path / "run")
    in_memory = trained.predict_proba(texts)
    np.testing.assert_array_equal(loaded.predict_proba(texts), in_memory)
    with torch.no_grad():  # the text path equals the array path the test accuracy came from
        ids = torch.from_numpy(trained.encode(texts))
        np.testing.assert_allclose(
            torch.sigmoid(trained.model(ids)).numpy(), in_memory, rtol=0, atol=0
        )

    # ... and so does `elman predict`, from arguments and from standard input.
    output = _checked(
        "predict",
        "--model",
        str(tmp_path / "run"),
        "--json",
        texts[0],
        "-",
        stdin="\n".join(" ".join(t.split()) for t in texts[1:5]) + "\n",
    )
    records = json.loads(output.stdout)
    assert [r["source"] for r in records] == ["argument 1"] + [f"<stdin>:{n}" for n in range(1, 5)]
    flat = [texts[0]] + [" ".join(t.split()) for t in texts[1:5]]
    np.testing.assert_allclose(
        [r["probability"] for r in records], trained.predict_proba(flat), rtol=1e-6
    )
    assert {r["label"] for r in records} <= {"positive", "negative"}


@pytest.mark.slow
def test_preset_best_beats_the_reference_recipe_on_the_test_reviews(real_archive, real_cache):
    """`--preset best` on the real reviews, seed 0, against the reference recipe, seed 0."""
    from elman.runs import preset

    accuracies = {}
    for recipe in ("reference", "best"):
        config = preset("imdb", recipe=recipe)
        config.data.data, config.data.cache_dir = str(real_archive), str(real_cache)
        trained = train_imdb(config, log=lambda _: None, progress=False)
        accuracies[recipe] = trained.metrics["test_acc"]
    # Seed 0 on the 2-core machine: reference 0.8579, best 0.8872. Five seeds: reference
    # 0.8583 ± 0.0070, best 0.8861 ± 0.0013 (README), so the margins below hold on other CPUs too.
    assert accuracies["best"] >= accuracies["reference"] + 0.01, accuracies
    assert accuracies["best"] >= 0.875, accuracies
