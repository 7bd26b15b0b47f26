"""Inference: a trained model as one folder; save it, load it (``elman.load``) and predict.
Nothing here imports the trainer, the workers' module or the encoded shards: training builds on
this module, not the reverse (``tests/test_layout.py`` holds it). A saved folder::

    runs/imdb/
        config.json          source, class names, architecture, sizes, data and training
                             settings, elman version (elman.config)
        weights.safetensors  the parameters (no pickle); for numbers, also the training split's
                             mean and std the model standardises its inputs with
        vocabulary.txt       text models: one word per line; line i is id i
        history.json         one record per epoch
        metrics.json         test loss and accuracy, best validation epoch, timings
        checkpoint.pt        the training state, for --resume

Every file is written atomically (see ``elman.files``). Reading new inputs (texts, WAV files)
into arrays is the data source's job (``elman.data``); this module only saves, loads, predicts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elman.config import CONFIG, HISTORY, METRICS, WEIGHTS, RunConfig, holds_model, save_config
from elman.data.source import Fitted, Learned
from elman.data.text import VOCABULARY, Vocabulary, read_vocabulary, vocabulary_bytes
from elman.errors import UserError
from elman.files import atomic_write, json_bytes
from elman.models import (
    ReviewClassifier,
    SequenceModel,
    batch_outputs,
    build_model,
    class_probabilities,
    skip_missing,
)
from elman.runs import encoding_of, load_config

__all__ = ["Prediction", "TrainedClassifier", "TrainedSequenceModel", "holds_model", "load"]


def save_bundle(
    folder: Path,
    model: ReviewClassifier | SequenceModel,
    vocabulary: Vocabulary | None,
    config: RunConfig,
    history: list[dict[str, float]],
    metrics: dict[str, float],
) -> None:
    """Write the whole folder (see the module docstring), each file atomically."""
    save_config(folder, config)
    save_files(folder, model, vocabulary, history, metrics)


def save_files(
    folder: Path,
    model: torch.nn.Module,
    vocabulary: Vocabulary | None,
    history: list[dict[str, float]],
    metrics: dict[str, float],
) -> None:
    """The folder's files beside config.json (any model: the language model saves with it)."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, save(state))
    if vocabulary is not None:
        atomic_write(folder / VOCABULARY, vocabulary_bytes(vocabulary))
    atomic_write(folder / HISTORY, json_bytes(history))
    atomic_write(folder / METRICS, json_bytes(metrics))


@dataclass
class Prediction:
    label: str  # the predicted class's name
    # Two classes: the probability of the second ("positive" for IMDB), as the sigmoid gives it.
    # More: the probability of the predicted class.
    probability: float


def to_predictions(probabilities: np.ndarray, classes: list[str]) -> list[Prediction]:
    """(N,) sigmoid outputs or (N, C) softmax outputs -> a Prediction per sample."""
    if len(classes) == 2:
        return [Prediction(classes[int(p > 0.5)], float(p)) for p in probabilities]
    return [Prediction(classes[int(p.argmax())], float(p.max())) for p in probabilities]


@dataclass
class Trained:
    """A trained network with its configuration: predictions from encoded inputs ``x`` (token
    ids (N, T) for text, values (N, T, F) with NaN gaps for numbers)."""

    model: ReviewClassifier | SequenceModel
    config: RunConfig
    metrics: dict[str, float] = field(default_factory=dict)

    def probabilities(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Two classes: the probability of the second, (N,). More: (N, C)."""
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        logits = batch_outputs(self.model, x, batch_size)
        return class_probabilities(logits, len(self.config.classes)).numpy()

    def predictions(self, x: np.ndarray, batch_size: int = 1000) -> list[Prediction]:
        return to_predictions(self.probabilities(x, batch_size), self.config.classes)

    @property
    def fitted(self) -> Fitted:
        """What the model's data source needs to read new data as it read the training data
        (``elman.data.source.Fitted``)."""
        mean, std = (getattr(self.model, name, None) for name in ("mean", "std"))
        learned = Learned(
            list(self.config.classes),
            getattr(self, "vocabulary", None),
            None if mean is None else mean.cpu().numpy(),
            None if std is None else std.cpu().numpy(),
            getattr(self.config.model, "input_size", None),
        )
        return Fitted(self.config.data, encoding_of(self.config), learned)


@dataclass
class TrainedClassifier(Trained):
    """A text classifier with everything needed to read raw text: ``predict(["great film"])``."""

    vocabulary: Vocabulary = field(default_factory=lambda: Vocabulary(()))
    _encoder: Any = field(default=None, init=False, repr=False, compare=False)

    def encode(self, texts: Sequence[str], notes: list[str] | None = None) -> np.ndarray:
        """Texts -> ids (N, max_len), exactly as the training texts were encoded (see
        ``elman.data.text.encode_texts``: texts the model cannot read are refused), by the
        compiled encoder (``elman.data.fast_text``, held equal to it)."""
        from elman.data.fast_text import FastEncoder

        if self._encoder is None or self._encoder.vocabulary is not self.vocabulary:
            self._encoder = FastEncoder(self.vocabulary)
        data, max_len = self.config.data, self.config.model.max_len
        return self._encoder.encode_texts(texts, max_len, data.padding, data.truncating, notes)

    def predict_proba(
        self, texts: Sequence[str] | str, batch_size: int = 1000, notes: list[str] | None = None
    ) -> np.ndarray:
        """Two classes: the probability of the second ("positive"), (N,). More: (N, C).
        One text (a str, not a list) gives its row alone: () or (C,)."""
        if isinstance(texts, str):  # (a str is a sequence too: of its characters)
            return self.predict_proba([texts], batch_size, notes)[0]
        return self.probabilities(self.encode(texts, notes), batch_size)

    def predict(
        self, texts: Sequence[str] | str, batch_size: int = 1000, notes: list[str] | None = None
    ) -> list[Prediction] | Prediction:
        """A label per text and its probability (see ``Prediction``); one text (a str) gives
        one ``Prediction``."""
        if isinstance(texts, str):
            return self.predict([texts], batch_size, notes)[0]
        return to_predictions(self.predict_proba(texts, batch_size, notes), self.config.classes)


@dataclass
class TrainedSequenceModel(Trained):
    """A model over numbers (series, speech) ready to use: ``predict(values)``,
    ``predict_files(["one.wav"])`` for speech, ``forecast(values)`` for forecasters."""

    def predict_proba(self, values: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """values (N, T, F) with NaN for missing steps -> (N,) or (N, C) probabilities."""
        return self.probabilities(np.asarray(values, dtype=np.float32), batch_size)

    def predict(self, values: np.ndarray, batch_size: int = 1000) -> list[Prediction]:
        return to_predictions(self.predict_proba(values, batch_size), self.config.classes)

    def forecast(self, values: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """The value each series takes next, (N, F), in the data's units."""
        values = torch.from_numpy(np.asarray(values, dtype=np.float32))
        outputs = batch_outputs(self.model, values.numpy(), batch_size)
        _, lengths = skip_missing(values)
        last = outputs[torch.arange(len(values)), lengths - 1]
        return self.model.to_values(last).numpy()

    def predict_files(
        self, paths: Sequence[Path], notes: set[str] | None = None
    ) -> list[Prediction]:
        """Speech: a prediction per WAV file, read as the training recordings were."""
        from elman.data.speech import features_of_files

        notes = set() if notes is None else notes
        return self.predict(features_of_files(list(paths), self.config.data, notes))


def _weights(folder: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of weights.safetensors, refused unless each is float32 and finite (as elman
    writes them) and they fit the model the configuration describes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / WEIGHTS
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path} is not readable safetensors ({error}): train it again") from None
    for name, tensor in state.items():
        if tensor.dtype != torch.float32:
            raise UserError(
                f"{path}: {name} is {str(tensor.dtype).removeprefix('torch.')}, but elman "
                "saves float32: this file was not written by elman; train the model again"
            )
        if not torch.isfinite(tensor).all():
            raise UserError(f"{path}: {name} holds NaN or infinite values: train it again")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1].strip()
        raise UserError(
            f"the weights in {folder} do not fit its {CONFIG} ({detail}); the folder mixes "
            "files of different models: train it again"
        ) from None
    return state


def load(folder: str | Path) -> TrainedClassifier | TrainedSequenceModel:
    """The model saved in ``folder``, ready to predict. Refuses (one line, UserError) a folder
    whose configuration, weights or vocabulary are damaged or do not fit together."""
    folder = Path(folder)
    config = load_config(folder)
    for name in (WEIGHTS, VOCABULARY) if config.reads_text else (WEIGHTS,):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is not a complete elman model: {name} is missing")
    model = build_model(config)
    _weights(folder, model)
    metrics_path = folder / METRICS
    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    except (ValueError, UnicodeDecodeError):
        metrics = {}  # (only shown, never used to predict)
    if not config.reads_text:
        return TrainedSequenceModel(model, config, metrics)
    vocabulary = read_vocabulary(folder / VOCABULARY, config.model.vocab_size)
    return TrainedClassifier(model, config, metrics, vocabulary)
