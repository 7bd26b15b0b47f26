"""The jobs behind the command line, as library calls: train on IMDB, on the user's own text,
series or speech (or resume any of them), and evaluate a saved model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from elman.bundle import (
    CHECKPOINT,
    HISTORY,
    METRICS,
    VOCABULARY,
    WEIGHTS,
    RunConfig,
    TrainedClassifier,
    TrainedSequenceModel,
    holds_model,
    load,
    load_config,
    save_bundle,
    save_config,
)
from elman.data.imdb import IMDBConfig, load_imdb
from elman.data.series import SeriesConfig, load_series
from elman.data.speech import SpeechConfig, load_speech
from elman.data.split import Split
from elman.data.text import Vocabulary
from elman.data.textfiles import TextConfig, load_texts
from elman.errors import UserError
from elman.metrics import (
    classification_report,
    forecast_report,
    format_classification,
    format_forecast,
)
from elman.models import ModelConfig, ReviewClassifier, SequenceConfig, SequenceModel, summary
from elman.train import TrainConfig, evaluate, fit


def imdb_preset(architecture: str = "rnn") -> RunConfig:
    """The reference settings for each architecture (the shallow baseline reads 20 words with
    8-dimensional embeddings for 10 epochs, as in the book it comes from)."""
    if architecture == "shallow":
        return RunConfig(
            ModelConfig("shallow", embedding_dim=8, max_len=20),
            IMDBConfig(max_len=20),
            TrainConfig(epochs=10),
        )
    return RunConfig(ModelConfig(architecture))


def preset(source: str, architecture: str = "rnn") -> RunConfig:
    """Default settings for each source. Text: as IMDB. Series and speech have few samples, so
    more epochs with early stopping. Speech: 128 units; the simple RNN's best on FSDD (README)."""
    if source == "imdb":
        return imdb_preset(architecture)
    if source == "text":
        config = imdb_preset(architecture)
        return replace(config, data=TextConfig(max_len=config.data.max_len), source="text")
    if source == "series":
        return RunConfig(
            SequenceConfig(architecture),
            SeriesConfig(),
            TrainConfig(epochs=200, patience=20),
            source="series",
        )
    return RunConfig(
        SequenceConfig(architecture, hidden_size=128),
        SpeechConfig(),
        TrainConfig(epochs=100, patience=10),
        source="speech",
    )


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse to train over a saved model unless asked; with ``overwrite``, clear its files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    if holds_model(out_dir):
        if not overwrite:
            raise UserError(
                f"{out_dir} already holds a model: choose another --out, add --overwrite to "
                "replace it, or --resume to continue its training"
            )
        for name in (CHECKPOINT, WEIGHTS, VOCABULARY, HISTORY, METRICS):
            (out_dir / name).unlink(missing_ok=True)


@dataclass
class Prepared:
    """A source's splits, and the run's settings completed from what the data says (sizes,
    class names, input width, sample rate)."""

    config: RunConfig
    train: Split
    val: Split
    test: Split
    vocabulary: Vocabulary | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


def prepare_data(config: RunConfig, log: Callable[[str], None] = print) -> Prepared:
    """Read the run's data and fit the model's settings to it (one source of truth for both)."""
    model, data = config.model, config.data
    if config.source == "imdb":
        imdb = load_imdb(data)
        model = replace(model, vocab_size=data.vocab_size, max_len=data.max_len)
        return Prepared(
            replace(config, model=model), imdb.train, imdb.val, imdb.test, imdb.vocabulary
        )
    if config.source == "text":
        text = load_texts(data, log)
        model = replace(
            model, vocab_size=data.vocab_size, max_len=data.max_len, classes=len(text.classes)
        )
        config = replace(config, model=model, classes=text.classes)
        return Prepared(config, text.train, text.val, text.test, text.vocabulary)
    if config.source == "series":
        numbers = load_series(data)
        model = replace(model, task=data.task)
    else:
        numbers, sample_rate = load_speech(data, log)
        data = replace(data, sample_rate=sample_rate)
    model = replace(
        model, input_size=numbers.train.x.shape[2], classes=max(len(numbers.classes), 2)
    )
    config = replace(config, model=model, data=data, classes=numbers.classes)
    return Prepared(
        config, numbers.train, numbers.val, numbers.test, mean=numbers.mean, std=numbers.std
    )


def build_model(prepared: Prepared) -> ReviewClassifier | SequenceModel:
    config = prepared.config
    if config.reads_text:
        return ReviewClassifier(config.model)
    model = SequenceModel(config.model)
    model.mean.copy_(torch.from_numpy(prepared.mean))
    model.std.copy_(torch.from_numpy(prepared.std))
    return model


def test_report(
    model: ReviewClassifier | SequenceModel, split: Split, config: RunConfig
) -> tuple[dict, str]:
    """The detailed test report (per-class scores and confusion matrix, or forecast errors
    against the last-value baseline) and its printed form."""
    batch = config.train.eval_batch_size
    if model.task == "forecast":
        report = forecast_report(model, split, batch)
        return report, format_forecast(report)
    report = classification_report(model, split, config.classes, batch)
    return report, format_classification(report)


def train_model(
    config: RunConfig,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
) -> TrainedClassifier | TrainedSequenceModel:
    """Load the data, build and summarise the model, train, test, save into ``out_dir``.

    The configuration is written first and a checkpoint after every epoch, so ``resume=True``
    (with the same ``out_dir``; ``config`` is then read from it) continues an interrupted run
    and ends with the same weights as an uninterrupted one."""
    if resume:
        if out_dir is None or not (Path(out_dir) / CHECKPOINT).exists():
            raise UserError(f"nothing to resume in {out_dir}: it has no {CHECKPOINT}")
        config = load_config(out_dir)
    config.model.validate()
    if out_dir is not None and not resume:
        prepare_output(Path(out_dir), overwrite)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    started = time.perf_counter()
    prepared = prepare_data(config, log)  # before anything is written: bad data fails first
    config = prepared.config
    config.model.validate()
    config.train.validate(len(prepared.train))  # before anything is written or printed
    if out_dir is not None and not resume:
        save_config(Path(out_dir), config)
    log(
        f"{config.source}: {len(prepared.train)} train, {len(prepared.val)} validation, "
        f"{len(prepared.test)} test samples ({time.perf_counter() - started:.1f}s to load)"
    )
    torch.manual_seed(config.train.seed)
    model = build_model(prepared)
    log(summary(model))
    checkpoint = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    history = fit(model, prepared.train, prepared.val, config.train, log, progress, checkpoint)
    test = evaluate(model, prepared.test, config.train.eval_batch_size)
    metric = "mae" if model.task == "forecast" else "acc"
    best = min(history, key=lambda record: record["val_loss"])
    report, printed = test_report(model, prepared.test, config)
    metrics = {
        "test_loss": test["loss"],
        f"test_{metric}": test[metric],
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        f"best_val_{metric}": (min if metric == "mae" else max)(
            record[f"val_{metric}"] for record in history
        ),
        "seconds_per_epoch": float(np.mean([record["seconds"] for record in history])),
        "total_seconds": time.perf_counter() - started,
        "report": report,
    }
    log(f"Test: loss {test['loss']:.4f} - {metric} {test[metric]:.4f}")
    log(printed)
    if out_dir is not None:
        save_bundle(Path(out_dir), model, prepared.vocabulary, config, history, metrics)
        log(f"Saved to {out_dir}")
    if config.reads_text:
        return TrainedClassifier(model, prepared.vocabulary, config, metrics)
    return TrainedSequenceModel(model, config, metrics)


# The IMDB job is train_model with an "imdb" configuration (``imdb_preset``); the name stays.
train_imdb = train_model


def _check_vocabulary(vocabulary: Vocabulary, classifier: TrainedClassifier, folder: Path) -> None:
    if vocabulary != classifier.vocabulary:
        raise UserError(
            f"the vocabulary saved in {folder} does not match the reviews in this archive; "
            "use the archive the model was trained on"
        )


def labelled_split(
    trained: TrainedClassifier | TrainedSequenceModel,
    path: Path,
    log: Callable[[str], None] = print,
) -> Split:
    """Every labelled sample of ``path`` (a file or folder in the format the model was trained
    on; a folder's test/ part if it has one), encoded as the model reads it. A label the model
    does not know is refused with its line or file."""
    from elman.data.series import cut, forecast_split, read_series
    from elman.data.series import labelled_split as series_split
    from elman.data.speech import recordings_to_raw, wav_files
    from elman.data.textfiles import encode_labelled, read_labelled

    config, classes = trained.config, trained.config.classes
    data = config.data
    if config.source == "text":
        parts = read_labelled(path, data, invalid=[])
        return encode_labelled(parts.get("test", parts["train"]), trained.vocabulary, classes, data)
    if config.source == "series":
        raw = cut(read_series(path, data), data.max_len)
        if data.task == "forecast":
            return forecast_split(raw, trained.model.mean.numpy(), trained.model.std.numpy())
    else:
        notes: set[str] = set()
        raw, _ = recordings_to_raw(wav_files(path), str(path), data, data.sample_rate, notes)
        for note in sorted(notes):
            log(f"note: {note}")
    if raw.labels is None:
        raise UserError(f"{path} has no labels to evaluate against")
    return series_split(raw, classes)


def evaluate_saved(
    folder: Path,
    data_path: str | None = None,
    cache_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Loss, accuracy (or MAE) and the detailed report of the model saved in ``folder``: on
    ``data_path`` (labelled, in the training format), or else on the test split it was tested on
    (IMDB: the 25,000 test reviews)."""
    trained = load(folder)
    config = trained.config
    if config.source == "imdb":
        data_config = replace(
            config.data,
            data=data_path or config.data.data,
            cache_dir=cache_dir or config.data.cache_dir,
        )
        imdb = load_imdb(data_config)
        _check_vocabulary(imdb.vocabulary, trained, folder)
        test = imdb.test
    elif data_path:
        test = labelled_split(trained, Path(data_path), log)
    else:
        test = prepare_data(config, log).test
    metrics = evaluate(trained.model, test, config.train.eval_batch_size)
    report, printed = test_report(trained.model, test, config)
    return {**metrics, "samples": len(test), "report": report, "printed": printed}
