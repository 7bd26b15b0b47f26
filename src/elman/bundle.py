"""A trained model as one folder, and what a user does with it: load it and predict.

    runs/imdb/
        config.json          architecture, sizes, tokenizer and training settings, elman version
        weights.safetensors  the parameters (no pickle)
        vocabulary.txt       one word per line; line i is id i
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
from elman.data.text import OOV, Vocabulary, pad_sequences, tokenize
from elman.errors import UserError
from elman.files import atomic_write, json_bytes
from elman.models import ModelConfig, ReviewClassifier
from elman.train import TrainConfig

CONFIG, WEIGHTS, VOCABULARY, HISTORY, METRICS, CHECKPOINT = (
    "config.json",
    "weights.safetensors",
    "vocabulary.txt",
    "history.json",
    "metrics.json",
    "checkpoint.pt",
)
LABELS = ("negative", "positive")


@dataclass
class RunConfig:
    """Everything that defines a run: the network, the data it reads, how it is trained."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: IMDBConfig = field(default_factory=IMDBConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


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
        return RunConfig(
            model=ModelConfig(**saved["model"]),
            data=IMDBConfig(**saved["data"]),
            train=TrainConfig(**saved["train"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a valid elman configuration ({error})") from None


def save_bundle(
    folder: Path,
    model: ReviewClassifier,
    vocabulary: Vocabulary,
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
    atomic_write(folder / VOCABULARY, ("\n".join(vocabulary.words) + "\n").encode())
    atomic_write(folder / HISTORY, json_bytes(history))
    atomic_write(folder / METRICS, json_bytes(metrics))


@dataclass
class Prediction:
    label: str  # "positive" or "negative"
    probability: float  # of "positive"


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
                    "words, all unknown): give English movie-review text"
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

    @torch.no_grad()
    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 1000, notes: list[str] | None = None
    ) -> np.ndarray:
        """Probability that each review is positive, (N,)."""
        ids = torch.from_numpy(self.encode(texts, notes))
        self.model.eval()
        batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
        if not batches:
            return np.zeros(0, dtype=np.float32)
        return torch.cat([self.model.predict_proba(batch) for batch in batches]).numpy()

    def predict(
        self, texts: Sequence[str], batch_size: int = 1000, notes: list[str] | None = None
    ) -> list[Prediction]:
        """A label ("positive"/"negative") and the probability of "positive" per review."""
        return [
            Prediction(LABELS[int(p > 0.5)], float(p))
            for p in self.predict_proba(texts, batch_size, notes)
        ]


def load(folder: str | Path) -> TrainedClassifier:
    """The model saved in ``folder``, ready to predict. Refuses a folder whose weights or
    vocabulary do not fit its configuration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = load_config(folder)
    for name in (WEIGHTS, VOCABULARY):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is not a complete elman model: {name} is missing")
    model = ReviewClassifier(config.model)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS))
    except (RuntimeError, SafetensorError) as error:
        detail = str(error).strip().splitlines()[-1].strip()
        raise UserError(
            f"the weights in {folder} do not fit its {CONFIG} ({detail}); the folder mixes "
            "files of different models: train it again"
        ) from None
    words = tuple((folder / VOCABULARY).read_text(encoding="utf-8").splitlines())
    if len(words) != config.model.vocab_size or words[:1] != ("<pad>",):
        raise UserError(
            f"{folder / VOCABULARY} has {len(words)} words but the model has "
            f"{config.model.vocab_size} ids; the folder mixes files of different models"
        )
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return TrainedClassifier(model, Vocabulary(words), config, metrics)
