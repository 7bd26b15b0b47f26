"""The jobs behind the command line, as library calls: train on IMDB (or resume), evaluate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
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
    holds_model,
    load,
    load_config,
    save_bundle,
    save_config,
)
from elman.data.imdb import IMDBConfig, IMDBData, load_imdb
from elman.errors import UserError
from elman.models import ModelConfig, ReviewClassifier, summary
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


def _check_vocabulary(data: IMDBData, classifier: TrainedClassifier, folder: Path) -> None:
    if data.vocabulary != classifier.vocabulary:
        raise UserError(
            f"the vocabulary saved in {folder} does not match the reviews in this archive; "
            "use the archive the model was trained on"
        )


def train_imdb(
    config: RunConfig,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
) -> TrainedClassifier:
    """Load IMDB, build and summarise the model, train, test, save into ``out_dir``.

    The configuration is written first and a checkpoint after every epoch, so ``resume=True``
    (with the same ``out_dir``; ``config`` is then read from it) continues an interrupted run
    and ends with the same weights as an uninterrupted one."""
    if resume:
        if out_dir is None or not (Path(out_dir) / CHECKPOINT).exists():
            raise UserError(f"nothing to resume in {out_dir}: it has no {CHECKPOINT}")
        config = load_config(out_dir)
    # The data settings decide the model's input: one source of truth for both.
    config = replace(
        config,
        model=replace(config.model, vocab_size=config.data.vocab_size, max_len=config.data.max_len),
    )
    config.model.validate()
    if out_dir is not None and not resume:
        prepare_output(Path(out_dir), overwrite)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    started = time.perf_counter()
    data = load_imdb(config.data)  # before anything is written: bad data fails first
    if out_dir is not None and not resume:
        save_config(Path(out_dir), config)
    log(
        f"IMDB: {len(data.train)} train, {len(data.val)} validation, {len(data.test)} test reviews"
        f" ({time.perf_counter() - started:.1f}s to load)"
    )
    torch.manual_seed(config.train.seed)
    model = ReviewClassifier(config.model)
    log(summary(model))
    checkpoint = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    history = fit(model, data.train, data.val, config.train, log, progress, checkpoint)
    test = evaluate(model, data.test, config.train.eval_batch_size)
    best = min(history, key=lambda record: record["val_loss"])
    metrics = {
        "test_loss": test["loss"],
        "test_acc": test["acc"],
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        "best_val_acc": max(record["val_acc"] for record in history),
        "seconds_per_epoch": float(np.mean([record["seconds"] for record in history])),
        "total_seconds": time.perf_counter() - started,
    }
    log(f"Test: loss {test['loss']:.4f} - acc {test['acc']:.4f}")
    if out_dir is not None:
        save_bundle(Path(out_dir), model, data.vocabulary, config, history, metrics)
        log(f"Saved to {out_dir}")
    return TrainedClassifier(model, data.vocabulary, config, metrics)


def evaluate_saved(
    folder: Path, data_path: str | None = None, cache_dir: str | None = None
) -> dict[str, float]:
    """Test loss and accuracy of the model saved in ``folder`` on the 25,000 test reviews."""
    classifier = load(folder)
    data_config = classifier.config.data
    data_config = replace(
        data_config,
        data=data_path or data_config.data,
        cache_dir=cache_dir or data_config.cache_dir,
    )
    data = load_imdb(data_config)
    _check_vocabulary(data, classifier, folder)
    metrics = evaluate(classifier.model, data.test, classifier.config.train.eval_batch_size)
    return {**metrics, "reviews": len(data.test)}
