"""The run configuration: presets, config.json, folders saved before settings were stored once."""

import json

import pytest

from conftest import save_small_model
from elman.config import save_config
from elman.errors import UserError
from elman.inference import load
from elman.runs import load_config, preset


def test_presets():
    imdb, shallow = preset("imdb"), preset("imdb", "shallow")
    assert (imdb.model.vocab_size, imdb.model.max_len, imdb.train.epochs) == (10_000, 500, 3)
    assert (shallow.model.embedding_dim, shallow.model.max_len, shallow.train.epochs) == (8, 20, 10)
    speech = preset("speech", "rnn")
    assert (speech.model.hidden_size, speech.model.task, speech.train.patience) == (
        128,
        "classify",
        10,
    )
    # numbers: the echo-state network unless --model says otherwise (README, "How recipes are
    # chosen"); a recipe may name its own architecture
    assert preset("series").model.architecture == preset("speech").model.architecture == "esn"
    assert preset("speech", recipe="best").model.architecture == "rnn"
    assert preset("speech", "gru", recipe="best").model.architecture == "gru"
    assert preset("series").train.epochs == 200 and preset("text").data.text_column == "text"
    with pytest.raises(UserError, match="unknown source"):
        preset("video")


@pytest.mark.parametrize("source", ["imdb", "text", "series", "speech"])
def test_config_round_trip(tmp_path, source):
    config = preset(source)
    config.classes = config.classes or ["a", "b"]  # (the data names them; IMDB's are known)
    save_config(tmp_path, config)
    assert load_config(tmp_path) == config


def test_folder_saved_before_settings_were_stored_once_still_predicts(tmp_path):
    """config.json of the first releases held vocab_size, max_len and seed twice, and the class
    count as a number beside the class names: such a folder loads and predicts the same."""
    model, _ = save_small_model(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    saved["model"]["classes"] = 2
    saved["data"].update(vocab_size=13, max_len=16, seed=0)
    now = load(tmp_path).predict(["a great film", "a terrible film"])
    path.write_text(json.dumps(saved))
    before = load(tmp_path).predict(["a great film", "a terrible film"])
    assert before == now


def test_language_model_folder_is_not_a_classifier(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "language model"}))
    with pytest.raises(UserError, match="holds a language model"):
        load_config(tmp_path)


def test_a_batch_larger_than_the_data_shrinks_to_it_with_any_number_of_workers():
    from elman.config import TrainConfig
    from elman.errors import UserError

    notes: list[str] = []
    assert TrainConfig(batch_size=16).fitted_to(20, log=notes.append) == TrainConfig(batch_size=16)
    fitted = TrainConfig(batch_size=32).fitted_to(29, log=notes.append)  # 36 series, 7 held out
    assert fitted == TrainConfig(batch_size=29)
    assert notes == ["The batch size 32 is larger than the 29 training samples: batches of 29"]
    fitted = TrainConfig(batch_size=16).fitted_to(21, workers=2, log=notes.append)
    assert fitted.batch_size == 10
    assert notes[1].endswith("among the workers: batches of 20 (2 workers: 10 rows each)")
    with pytest.raises(UserError, match="3 workers need a training sample each, and there are 2"):
        TrainConfig().fitted_to(2, workers=3)
