"""A trained model as one folder, and what a user does with it: load it and predict.

    runs/imdb/
        config.json          source, class names, architecture, sizes, data and training
                             settings, elman version
        weights.safetensors  the parameters (no pickle); for numbers, also the training split's
                             mean and std the model standardises its inputs with
        vocabulary.txt       text models: one word per line; line i is id i
        history.json         one record per epoch
        metrics.json         test loss and accuracy, best validation epoch, timings
        checkpoint.pt        the training state, for --resume

Every file is written atomically (see ``elman.files``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from elman.data.imdb import IMDBConfig
from elman.data.series import SeriesConfig
from elman.data.speech import SpeechConfig
from elman.data.text import OOV, Vocabulary, pad_sequences, tokenize
from elman.data.textfiles import TextConfig
from elman.errors import UserError
from elman.files import atomic_write, json_bytes
from elman.models import (
    ModelConfig,
    ReviewClassifier,
    SequenceConfig,
    SequenceModel,
    class_probabilities,
)
from elman.train import TrainConfig, predict_outputs

CONFIG, WEIGHTS, VOCABULARY, HISTORY, METRICS, CHECKPOINT = (
    "config.json",
    "weights.safetensors",
    "vocabulary.txt",
    "history.json",
    "metrics.json",
    "checkpoint.pt",
)
LABELS = ("negative", "positive")
# What each source reads and the network for it: words -> ReviewClassifier, numbers -> SequenceModel
SOURCES = {
    "imdb": (ModelConfig, IMDBConfig),
    "text": (ModelConfig, TextConfig),
    "series": (SequenceConfig, SeriesConfig),
    "speech": (SequenceConfig, SpeechConfig),
}


@dataclass
class RunConfig:
    """Everything that defines a run: the network, the data it reads, how it is trained, and
    the names of the classes it tells apart (in the order of its outputs)."""

    model: ModelConfig | SequenceConfig = field(default_factory=ModelConfig)
    data: IMDBConfig | TextConfig | SeriesConfig | SpeechConfig = field(default_factory=IMDBConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str = "imdb"
    classes: list[str] = field(default_factory=lambda: list(LABELS))

    @property
    def reads_text(self) -> bool:
        return self.source in ("imdb", "text")


def holds_model(folder: Path) -> bool:
    return any((Path(folder) / name).exists() for name in (CONFIG, WEIGHTS, CHECKPOINT))


def save_config(folder: Path, config: RunConfig) -> None:
    from elman import __version__

    Path(folder).mkdir(parents=True, exist_ok=True)
    saved = {"elman_version": __version__, **asdict(config)}
    atomic_write(Path(folder) / CONFIG, json_bytes(saved))


def load_config(folder: Path) -> RunConfig:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise UserError(f"{folder} is not a saved elman model: {CONFIG} is missing")
    try:
        saved = json.loads(path.read_text())
        source = saved.get("source", "imdb")
        model_config, data_config = SOURCES[source]
        return RunConfig(
            model=model_config(**saved["model"]),
            data=data_config(**saved["data"]),
            train=TrainConfig(**saved["train"]),
            source=source,
            classes=list(saved.get("classes", LABELS)),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a valid elman configuration ({error})") from None


def save_bundle(
    folder: Path,
    model: ReviewClassifier | SequenceModel,
    vocabulary: Vocabulary | None,
    config: RunConfig,
    history: list[dict[str, float]],
    metrics: dict[str, float],
) -> None:
    """Write the whole folder (see the module docstring), each file atomically."""
    from safetensors.torch import save

    folder = Path(folder)
    save_config(folder, config)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, save(state))
    if vocabulary is not None:
        atomic_write(folder / VOCABULARY, ("\n".join(vocabulary.words) + "\n").encode())
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
class TrainedClassifier:
    """A review classifier with everything needed to read raw text: ``predict(["great film"])``."""

    model: ReviewClassifier
    vocabulary: Vocabulary
    config: RunConfig
    metrics: dict[str, float] = field(default_factory=dict)

    def encode(self, texts: Sequence[str], notes: list[str] | None = None) -> np.ndarray:
        """Texts -> ids (N, max_len), exactly as the training reviews were encoded.

        A review with no words, or with no word the model knows, is refused with a UserError:
        the model would answer from padding alone. Reviews longer than the model reads are cut
        as in training; ``notes`` (if given) collects a line for each."""
        data = self.config.data
        sequences = []
        for number, text in enumerate(texts, start=1):
            tokens = tokenize(text)
            if not tokens:
                raise UserError(f"review {number} has no words: give it some text")
            ids = self.vocabulary.encode(tokens)
            if all(i == OOV for i in ids[1:]):
                raise UserError(
                    f"review {number} has no word in the model's vocabulary ({len(tokens)} "
                    "words, all unknown): give text like the model's training texts"
                )
            if notes is not None and len(ids) > data.max_len:
                kept = "last" if data.truncating == "pre" else "first"
                notes.append(
                    f"review {number} has {len(tokens):,} words; the model reads its {kept} "
                    f"{data.max_len - (1 if data.truncating == 'post' else 0)}"
                )
            sequences.append(ids)
        ids, _ = pad_sequences(sequences, data.max_len, data.padding, data.truncating)
        return ids

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 1000, notes: list[str] | None = None
    ) -> np.ndarray:
        """Two classes: the probability of the second ("positive"), (N,). More: (N, C)."""
        ids = self.encode(texts, notes)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        logits = predict_outputs(self.model, ids, batch_size)
        return class_probabilities(logits, len(self.config.classes)).numpy()

    def predict(
        self, texts: Sequence[str], batch_size: int = 1000, notes: list[str] | None = None
    ) -> list[Prediction]:
        """A label per review and its probability (see ``Prediction``)."""
        return to_predictions(self.predict_proba(texts, batch_size, notes), self.config.classes)


@dataclass
class TrainedSequenceModel:
    """A model over numbers (series, speech) ready to use: ``predict(values)``,
    ``predict_files(["one.wav"])`` for speech, ``forecast(values)`` for forecasters."""

    model: SequenceModel
    config: RunConfig
    metrics: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, values: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """values (N, T, F) with NaN for missing steps -> (N,) or (N, C) probabilities."""
        logits = predict_outputs(self.model, np.asarray(values, dtype=np.float32), batch_size)
        return class_probabilities(logits, len(self.config.classes)).numpy()

    def predict(self, values: np.ndarray, batch_size: int = 1000) -> list[Prediction]:
        return to_predictions(self.predict_proba(values, batch_size), self.config.classes)

    def forecast(self, values: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """The value each series takes next, (N, F), in the data's units."""
        from elman.models import skip_missing

        values = torch.from_numpy(np.asarray(values, dtype=np.float32))
        outputs = predict_outputs(self.model, values.numpy(), batch_size)
        _, lengths = skip_missing(values)
        last = outputs[torch.arange(len(values)), lengths - 1]
        return self.model.to_values(last).numpy()

    def features_of_files(self, paths: Sequence[Path], notes: set[str]) -> np.ndarray:
        """Speech: WAV files -> features (N, frames, n) as in training (mono, same rate)."""
        from elman.data.series import pad_with_nan
        from elman.data.speech import features, read_wav

        data = self.config.data
        rows = []
        for path in paths:
            if not Path(path).is_file():
                raise UserError(f"{path} is not a file: give WAV files to predict")
            samples, rate = read_wav(Path(path).read_bytes(), str(path), data.sample_rate, notes)
            rows.append(features(samples, rate, data))
        return pad_with_nan(rows)

    def predict_files(
        self, paths: Sequence[Path], notes: set[str] | None = None
    ) -> list[Prediction]:
        return self.predict(self.features_of_files(paths, set() if notes is None else notes))


def load(folder: str | Path) -> TrainedClassifier | TrainedSequenceModel:
    """The model saved in ``folder``, ready to predict. Refuses a folder whose weights or
    vocabulary do not fit its configuration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = load_config(folder)
    for name in (WEIGHTS, VOCABULARY) if config.reads_text else (WEIGHTS,):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is not a complete elman model: {name} is missing")
    model = ReviewClassifier(config.model) if config.reads_text else SequenceModel(config.model)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS))
    except (RuntimeError, SafetensorError) as error:
        detail = str(error).strip().splitlines()[-1].strip()
        raise UserError(
            f"the weights in {folder} do not fit its {CONFIG} ({detail}); the folder mixes "
            "files of different models: train it again"
        ) from None
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not config.reads_text:
        return TrainedSequenceModel(model, config, metrics)
    words = tuple((folder / VOCABULARY).read_text(encoding="utf-8").splitlines())
    if len(words) != config.model.vocab_size or words[:1] != ("<pad>",):
        raise UserError(
            f"{folder / VOCABULARY} has {len(words)} words but the model has "
            f"{config.model.vocab_size} ids; the folder mixes files of different models"
        )
    return TrainedClassifier(model, Vocabulary(words), config, metrics)
