"""Saved model folders: load, predict identically, refuse what does not fit; bad reviews."""

import json
import time

import numpy as np
import pytest
import torch

import elman
from conftest import REVIEW_WORDS, run_elman, save_small_model
from elman.errors import UserError


@pytest.fixture
def saved(tmp_path):
    model, vocabulary = save_small_model(tmp_path)
    return tmp_path, model, vocabulary


def test_loaded_model_predicts_like_the_saved_one(saved):
    folder, model, vocabulary = saved
    loaded = elman.load(folder)
    texts = ["The film was great, I loved it", "bad acting<br />boring story", "it"]
    ids = torch.from_numpy(loaded.encode(texts))
    assert ids.shape == (3, 16) and ids[0, -1].item() == vocabulary.encode(["it"])[-1]
    with torch.no_grad():
        expected = torch.sigmoid(model(ids)).numpy()
    np.testing.assert_array_equal(loaded.predict_proba(texts), expected)
    predictions = loaded.predict(texts)
    assert [p.label for p in predictions] == [
        "positive" if p > 0.5 else "negative" for p in expected
    ]
    assert loaded.metrics == {"test_acc": 0.5}
    assert loaded.predict([]) == [] and loaded.predict_proba([]).shape == (0,)
    assert not list(folder.glob("*.tmp"))


def test_folder_mixing_models_is_refused(saved):
    folder, _, _ = saved
    config = json.loads((folder / "config.json").read_text())
    config["model"]["hidden_size"] = 7
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="do not fit its config.json"):
        elman.load(folder)


def test_vocabulary_of_another_model_is_refused(saved):
    folder, _, _ = saved
    (folder / "vocabulary.txt").write_text("<pad>\n<start>\n<oov>\nthe\n")
    with pytest.raises(UserError, match="4 words but the model has 13 ids"):
        elman.load(folder)


def test_damaged_weights_are_refused(saved):
    folder, _, _ = saved
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="is not readable safetensors"):
        elman.load(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(UserError, match="weights.safetensors is missing"):
        elman.load(folder)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(UserError, match="not a saved elman model"):
        elman.load(tmp_path)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "review 1 has no words"),
        ("   \n\t  ", "review 1 has no words"),
        ("!!! ... ???", "review 1 has no words"),
        ("zorblax quintessential flibbertigibbet", "no word in the model's vocabulary"),
    ],
)
def test_reviews_the_model_cannot_read_get_clear_errors(saved, text, message):
    folder, _, _ = saved
    with pytest.raises(UserError, match=message):
        elman.load(folder).predict(["the film", text][1:])
    result = run_elman("predict", "--model", str(folder), text)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_utf8_is_decoded_with_replacement_and_said(saved, tmp_path):
    folder, _, _ = saved
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"the film was great\nbad \xff\xfe acting\n")
    result = run_elman("predict", "--model", str(folder), "--file", str(reviews), "--json")
    assert result.returncode == 0, result.stderr
    assert "not valid UTF-8" in result.stderr
    records = json.loads(result.stdout)
    assert [r["source"] for r in records] == [f"{reviews}:1", f"{reviews}:2"]
    expected = elman.load(folder).predict_proba(["the film was great", "bad \ufffd\ufffd acting"])
    np.testing.assert_allclose([r["probability"] for r in records], expected, rtol=1e-6)


def test_one_megabyte_review_is_cut_like_training_and_said(saved):
    folder, _, _ = saved
    huge = " ".join(REVIEW_WORDS[i % 10] for i in range(200_000))  # about 1 MB
    assert len(huge) > 1_000_000
    loaded = elman.load(folder)
    notes = []
    started = time.perf_counter()
    probability = loaded.predict_proba([huge], notes=notes)[0]
    assert time.perf_counter() - started < 10
    assert notes == ["review 1 has 200,000 words; the model reads its last 16"]
    # Cut at the front as in training (Keras' default): the last 16 words, start token gone.
    last_words = loaded.vocabulary.encode(huge.split()[-16:])[1:]
    np.testing.assert_array_equal(loaded.encode([huge])[0], last_words)
    with torch.no_grad():
        expected = loaded.model.predict_proba(torch.tensor([last_words]))[0].item()
    assert probability == pytest.approx(expected, abs=1e-7)


def test_predict_from_folder_and_standard_input(saved, tmp_path):
    folder, _, _ = saved
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    (reviews / "a.txt").write_text("the film was great")
    (reviews / "b.txt").write_text("boring story, bad acting")
    by_folder = run_elman("predict", "--model", str(folder), "--folder", str(reviews), "--json")
    by_stdin = run_elman(
        "predict",
        "--model",
        str(folder),
        "--json",
        "-",
        stdin="the film was great\nboring story, bad acting\n",
    )
    assert by_folder.returncode == 0 and by_stdin.returncode == 0
    probabilities = [
        [r["probability"] for r in json.loads(out.stdout)] for out in (by_folder, by_stdin)
    ]
    assert probabilities[0] == probabilities[1]
    plain = run_elman("predict", "--model", str(folder), "the film was great")
    assert plain.stdout.split()[0] in ("positive", "negative")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_elman("predict", "--model", str(folder), "--folder", str(empty))
    assert result.returncode == 1 and "holds no .txt files" in result.stderr
    result = run_elman("predict", "--model", str(folder))
    assert result.returncode == 1 and "no review to predict" in result.stderr


def test_one_text_given_as_a_string_is_one_text(saved):
    """``predict("good film")``: one prediction for the text, not one per character."""
    folder, _, _ = saved
    model = elman.load(folder)
    one = model.predict("a great film")
    assert one == model.predict(["a great film"])[0]
    assert model.predict_proba("a great film") == model.predict_proba(["a great film"])[0]
