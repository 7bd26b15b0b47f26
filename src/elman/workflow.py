"""The jobs behind the command line, as library calls: train on any source (or resume), evaluate
a saved model, predict with one. Each source's specifics are behind ``elman.data.SOURCES``.

    config -> source.read -> Splits -> build_model -> fit -> evaluate -> save_bundle
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import elman.cells as cells
from elman.config import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    METRICS,
    WEIGHTS,
    RunConfig,
    holds_model,
    save_config,
    updated,
)
from elman.data import SOURCES
from elman.data.shards import EncodedWriter, read_encoded, written
from elman.data.source import Given, Inputs, Learned, Splits
from elman.data.split import Split
from elman.data.text import VOCABULARY
from elman.distributed import World, check_same, device_for, fingerprint, joined, share_cores
from elman.errors import UserError
from elman.files import LOCK, locked_folder, refuse_if_locked
from elman.inference import Prediction, TrainedClassifier, TrainedSequenceModel, load, save_bundle
from elman.metrics import (
    classification_report,
    forecast_report,
    format_classification,
    format_forecast,
)
from elman.models import ReviewClassifier, SequenceModel, build_model, check_memory, summary
from elman.runs import encoding_of, load_config, preset
from elman.train import evaluate, fit, metric_name, predict_outputs, resolve_device

Log = Callable[[str], None]


def imdb_preset(architecture: str = "rnn") -> RunConfig:
    """The reference settings for each architecture on IMDB (see ``elman.config.preset``)."""
    return preset("imdb", architecture)


ELMAN_FILES = (CONFIG, WEIGHTS, VOCABULARY, HISTORY, METRICS, CHECKPOINT, LOCK)


def check_output(out_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse an output folder that is not elman's to write, or holds a model the run would
    replace without ``overwrite`` (its files are replaced only once the new run's data is
    read, so a run that fails early loses nothing)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"`out_dir` {out_dir} is a file, not a folder")
    if out_dir.resolve() == Path(out_dir.resolve().anchor):
        raise UserError(f"`out_dir` {out_dir} is the filesystem root: give a folder for the model")
    if resume:
        if not (out_dir / CONFIG).exists():
            raise UserError(f"nothing to resume in {out_dir}: it has no {CONFIG}")
        return
    foreign = sorted(
        entry.name
        for entry in (out_dir.iterdir() if out_dir.is_dir() else ())
        if entry.name not in ELMAN_FILES and not entry.name.endswith(".tmp")
    )
    if foreign:
        raise UserError(
            f"`out_dir` {out_dir} holds files elman did not write ({', '.join(foreign[:3])}): "
            "give a new or empty folder"
        )
    if not holds_model(out_dir):
        return
    if not overwrite:
        if not (out_dir / CHECKPOINT).exists() and not (out_dir / WEIGHTS).exists():
            raise UserError(
                f"{out_dir} holds a run that stopped before its first checkpoint: `resume` "
                f"{out_dir} starts it again with its settings, `overwrite` starts afresh"
            )
        raise UserError(
            f"{out_dir} already holds a model: choose another `out_dir`, add `overwrite` to "
            "replace it, or `resume` to continue its training"
        )


@contextlib.contextmanager
def claimed(out_dir: Path) -> Iterator[None]:
    """The output folder, locked for this run; a folder the run created is removed again if
    the run fails before writing anything into it."""
    created = not out_dir.exists()
    try:
        with locked_folder(out_dir):
            yield
    except BaseException:
        if created and out_dir.is_dir() and [e.name for e in out_dir.iterdir()] == [LOCK]:
            (out_dir / LOCK).unlink()
            out_dir.rmdir()
        raise


def check_tbptt(config: RunConfig, workers: int = 1) -> None:
    """``tbptt`` reads numeric sequences in chunks, in one process, through a layer that can
    (``elman.cells.check_chunks``)."""
    if not config.train.tbptt:
        return
    if config.reads_text:
        raise UserError("`tbptt` reads numeric sequences in chunks: train series or speech")
    if workers > 1:
        raise UserError("`tbptt` trains in one process: leave out `nproc_per_node`")
    cells.check_chunks(config.model, config.model.architecture)


def prepare_data(config: RunConfig, log: Log = print) -> tuple[RunConfig, Splits]:
    """Read the run's data, and complete the run's settings from what the data says (class
    names, input width, sample rate): one source of truth for both."""
    if config.train.encoded:
        splits = read_encoded(Path(config.train.encoded), config.source)
    else:
        splits = SOURCES[config.source].read(config.data, encoding_of(config), log)
    return completed(config, splits.learned, log), splits


def completed(config: RunConfig, learned: Learned, log: Log = print) -> RunConfig:
    """The run's settings completed from what its data source learned: the class names, the
    input width, the settings the data decided, an encoded folder's sizes."""
    fixed: dict[str, Any] = dict(learned.shape)
    if learned.input_size is not None:
        fixed["input_size"] = learned.input_size
    vocabulary, asked = learned.vocabulary, getattr(config.model, "vocab_size", 0)
    if vocabulary is not None and len(vocabulary) < fixed.get("vocab_size", asked):
        # A corpus with fewer distinct words than --vocab-size: the ids above its last word
        # would never be read, and the saved vocabulary would not match the model's size.
        log(
            f"The training texts hold {len(vocabulary)} ids with the reserved ones "
            f"(vocab size {asked} asked for more): the model has "
            f"{len(vocabulary)}"
        )
        fixed["vocab_size"] = len(vocabulary)
    return replace(
        config,
        model=replace(config.model, **fixed),
        data=replace(config.data, **learned.found),
        classes=list(learned.classes),
    )


def encode(config: RunConfig, out: Path, shard_size: int, log: Log = print) -> dict:
    """Read the run's data once and write it, encoded, into the new folder ``out``: the
    training split in shards of at most ``shard_size`` rows (``elman.data.shards``), which
    ``train`` reads with ``config.train.encoded = out``. A source that can (``Source.stream``:
    text from CSV/TSV/JSONL files) reads its files a piece at a time, so a corpus larger than
    memory can be encoded; the others are read whole first. Returns the folder's manifest."""
    source = SOURCES[config.source]
    with EncodedWriter(out, shard_size) as writer:
        learned = None
        if source.stream is not None:
            learned = source.stream(config.data, encoding_of(config), writer, log)
        if learned is None:
            config, splits = prepare_data(config, log)
            for part in ("train", "val", "test"):
                writer.add(part, getattr(splits, part))
            learned = splits.learned
        manifest = writer.finish(config.source, config.data, encoding_of(config), learned)
    log(f"Wrote {out}: {written(manifest)}")
    return manifest


def new_model(config: RunConfig, splits: Splits) -> ReviewClassifier | SequenceModel:
    """The untrained network, seeded; a numeric one standardises with the training split's
    statistics."""
    torch.manual_seed(config.train.seed)
    model = build_model(config)
    learned = splits.learned
    if learned.mean is not None:
        model.mean.copy_(torch.from_numpy(learned.mean))
        model.std.copy_(torch.from_numpy(learned.std))
    return model


def scored(
    model: ReviewClassifier | SequenceModel,
    split: Split,
    config: RunConfig,
    world: World | None = None,
) -> tuple[dict, dict, str]:
    """Loss and metric on ``split``, the detailed report (per-class scores and confusion
    matrix, or forecast errors against the last-value baseline) and its printed form: from ONE
    pass of the model over the split (shared by the ``world``'s workers)."""
    batch = config.train.eval_batch_size
    outputs = predict_outputs(model, split.x, batch, world)
    metrics = evaluate(model, split, batch, outputs)
    if model.task == "forecast":
        report = forecast_report(model, split, batch)
        return metrics, report, format_forecast(report)
    report = classification_report(model, split, config.classes, batch, outputs)
    return metrics, report, format_classification(report)


def _metrics(model, test: dict, history: list[dict], report: dict, started: float) -> dict:
    metric = metric_name(model.task)
    scores = {"test_loss": test["loss"], f"test_{metric}": test[metric]}
    if "val_loss" in history[-1]:  # validated (val-size 0 holds nothing out)
        best = min(history, key=lambda record: record["val_loss"])
        scores |= {
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            f"best_val_{metric}": (min if metric == "mae" else max)(
                record[f"val_{metric}"] for record in history
            ),
        }
    return {
        **scores,
        "seconds_per_epoch": float(np.mean([record["seconds"] for record in history])),
        "total_seconds": time.perf_counter() - started,
        "report": report,
    }


def train_model(
    config: RunConfig,
    out_dir: Path | None = None,
    log: Log = print,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    world: World | None = None,
) -> TrainedClassifier | TrainedSequenceModel:
    """Load the data, build and summarise the model, train, test, save into ``out_dir``.

    The folder is locked for the run. The configuration is written first and checkpoints
    during and after every epoch, so ``resume=True`` (with the same ``out_dir``; ``config`` is
    then read from it) continues an interrupted run and ends with the same weights as an
    uninterrupted one (a run stopped before its first checkpoint starts again).

    ``world``: this process's place among data-parallel workers (``World.from_environment()``
    under torchrun); every worker calls ``train_model`` with the same arguments, rank 0 alone
    prints and writes ``out_dir``, the others only read it."""
    world = world or World()
    device = device_for(world, resolve_device(config.train.device))
    with joined(world, device):
        if not world.main:
            log, progress = (lambda _: None), False
        if out_dir is None:
            return _train(config, None, log, progress, world=world)
        out_dir = Path(out_dir)
        check_tbptt(config, world.size)
        if not world.main:  # rank 0 checks and locks the folder; a refusal stops everyone
            config = _resumed(config, out_dir) if resume else config
            return _train(config, out_dir, log, progress, save_settings=False, world=world)
        refuse_if_locked(out_dir)  # another run's folder: say so first, whatever it holds
        check_output(out_dir, overwrite, resume)  # before the lock: a refused folder gets nothing
        with claimed(out_dir):
            check_output(out_dir, overwrite, resume)  # again: another run may just have saved
            if resume:
                config = _resumed(config, out_dir)
                if not (out_dir / CHECKPOINT).exists():
                    log(
                        f"{out_dir} has no checkpoint yet: the run starts again from its first step"
                    )
            return _train(config, out_dir, log, progress, save_settings=not resume, world=world)


def _resumed(config: RunConfig, out_dir: Path) -> RunConfig:
    """The run's settings, saved; where it runs (device, threads) is this machine's choice."""
    saved = load_config(out_dir)
    if (out_dir / METRICS).exists():  # written once the run has trained and tested
        raise UserError(
            f"the run in {out_dir} has finished (its {METRICS} is written): nothing to resume; "
            f"elman evaluate --model {out_dir} scores it again, --overwrite trains it anew"
        )
    here = {"device": config.train.device, "threads": config.train.threads}
    if config.train.encoded:  # where the data lies now (its contents are checked)
        here["encoded"] = config.train.encoded
    moved = {k: getattr(config.data, k, None) for k in _DATA_LOCATIONS}
    data = replace(saved.data, **{k: v for k, v in moved.items() if v})
    return replace(saved, train=replace(saved.train, **here), data=data)


_DATA_LOCATIONS = ("data", "cache_dir")  # where the files are, not what they hold


def compile_ahead(config: RunConfig) -> subprocess.Popen | None:
    """Compile the run's kernels in one more process while this one reads the data (numba
    keeps what it compiles on disk, where this process then finds it): a first run on a fresh
    install overlaps its slowest parts, one core each. (Two, one for the forward kernels and one
    for the backward, took longer: a third process on two cores, and a second import of torch
    and numba.) Text models only (the others' kernels depend on the data's width); none if
    there is nothing to do."""
    kind = cells.kind_of(config.model.architecture, config.reads_text)
    if not config.reads_text or not kind.compiled or (os.cpu_count() or 1) < 2:
        return None
    if compiled_on_disk(Path(__file__).parent / "kernels" / "ids.py"):
        return None
    settings = json.dumps(asdict(config.model))
    code = "import sys; from elman.workflow import warm_kernels; warm_kernels(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", code, settings],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def compiled_on_disk(source: Path) -> bool:
    """Whether numba keeps kernels of the module ``source`` compiled on disk, compiled after the
    module last changed (its index files in ``__pycache__``; older ones are stale: numba
    compiles again)."""
    changed = source.stat().st_mtime
    indexes = (source.parent / "__pycache__").glob(f"{source.stem}.*.nbi")
    return any(index.stat().st_mtime >= changed for index in indexes)


def warm_kernels(model_settings: str) -> None:
    """Compile what the run's training steps and predictions will (the same specialisations:
    they depend on types and options, not on sizes): one step and one prediction of a tiny
    model built like the run's."""
    from elman.config import ModelConfig
    from elman.models import ReviewClassifier

    settings = ModelConfig(**{**json.loads(model_settings), "vocab_size": 40, "max_len": 12})
    torch.set_num_threads(1)
    model = ReviewClassifier(settings)
    ids = torch.randint(3, 40, (4, 12))
    ids[0, :5] = 0  # padding in front, as real reviews have
    model.train()(ids).sum().backward()
    with torch.no_grad():
        model.eval()(ids)


def _train(
    config: RunConfig,
    out_dir: Path | None,
    log: Log,
    progress: bool,
    save_settings: bool = True,
    world: World | None = None,
) -> TrainedClassifier | TrainedSequenceModel:
    world = world or World()
    resolve_device(config.train.device)  # a device this machine lacks: refused before any work
    threads = None  # (one process without --threads: torch's and numba's defaults, all cores)
    if world.distributed or config.train.threads:  # torch and numba alike: never more threads
        threads = share_cores(world, config.train.threads)
    started = time.perf_counter()
    compiling = compile_ahead(config) if world.main else None
    config, splits = prepare_data(config, log)  # before anything is written: bad data fails first
    if compiling is not None:  # its kernels are on disk when it ends: waiting beats compiling
        with contextlib.suppress(subprocess.TimeoutExpired):
            compiling.wait(timeout=300)
        compiling.kill()
    config = _fitted(config, splits, world.size, log)  # before anything is written
    if world.distributed:
        print(
            f"elman: rank {world.rank}/{world.size} (pid {os.getpid()}): {threads} thread(s)",
            flush=True,
        )
        check_same(world, _fingerprints(config, splits))
    if out_dir is not None and save_settings and world.main:
        for name in (CHECKPOINT, WEIGHTS, VOCABULARY, HISTORY, METRICS):  # an old model's
            (out_dir / name).unlink(missing_ok=True)
        save_config(out_dir, config)
    world.barrier()  # the others read the folder only once rank 0 has cleared it
    log(
        f"{config.source}: {len(splits.train)} train, {len(splits.val)} validation, "
        f"{len(splits.test)} test samples ({time.perf_counter() - started:.1f}s to load)"
        + (
            f"; {world.size} workers, global batch {config.train.batch_size * world.size}"
            if world.distributed
            else ""
        )
    )
    model = new_model(config, splits)
    log(summary(model))
    saving = out_dir / CHECKPOINT if out_dir is not None else None
    run = _run_key(config, splits) if saving is not None else ""
    history = fit(model, splits.train, splits.val, config.train, log, progress, saving, world, run)
    test, report, printed = scored(model, splits.test, config, world)
    metrics = _metrics(model, test, history, report, started)
    metric = metric_name(model.task)
    log(f"Test: loss {test['loss']:.4f} - {metric} {test[metric]:.4f}")
    log(printed)
    if world.main:
        metrics |= _baselines(model, config, splits, test[metric], log)
    if out_dir is not None and world.main:
        save_bundle(out_dir, model, splits.learned.vocabulary, config, history, metrics)
        log(f"Saved to {out_dir}")
    if splits.learned.vocabulary is not None:
        return TrainedClassifier(model, config, metrics, splits.learned.vocabulary)
    return TrainedSequenceModel(model, config, metrics)


def _fitted(config: RunConfig, splits: Splits, workers: int, log: Log) -> RunConfig:
    """The settings for the data: a batch larger than the training split shrinks to it (said
    in a line), and the model must fit in memory."""
    config = replace(config, train=config.train.fitted_to(len(splits.train), workers, log))
    check_memory(config, steps=splits.train.steps)
    return config


def _baselines(model, config: RunConfig, splits: Splits, accuracy: float, log: Log) -> dict:
    """``{"baselines": {name: test accuracy}}`` of the classic models beside a classifier
    (``elman.baselines``), fitted on the same training split; said in a line or two.
    (Forecasting has its own: repeating the last value.)"""
    if model.task == "forecast":
        return {}
    if not isinstance(splits.train, Split):  # (streamed from disk: not held in memory whole)
        log("Baselines left out: the training data streams from an encoded folder")
        return {}
    from elman.baselines import baseline_scores, verdict

    vocab_size = config.model.vocab_size if config.reads_text else None
    learned = splits.learned
    scores = baseline_scores(splits.train, splits.test, vocab_size, learned.mean, learned.std)
    log(verdict(accuracy, scores))
    return {"baselines": scores}


def _fingerprints(config: RunConfig, splits: Splits) -> dict[str, str]:
    """What every worker must share: its settings (where it runs aside) and its data."""
    settings = asdict(config)
    settings["train"]["device"] = ""
    if splits.origin is not None:  # elman encode's folder: its manifest names every file
        return {"settings": fingerprint(settings), "data": splits.origin}
    data = [
        getattr(split, name)
        for split in (splits.train, splits.val, splits.test)
        for name in ("x", "y")
    ]
    return {"settings": fingerprint(settings), "data": fingerprint(*data)}


def _run_key(config: RunConfig, splits: Splits) -> str:
    """What a checkpoint must have been trained on to be resumed: ``_fingerprints`` of the
    settings that shape the training (where it runs and where its files lie aside) and of the
    data of every split."""
    keep = replace(config.train, threads=None, encoded=None)
    located = {k: None for k in _DATA_LOCATIONS if hasattr(config.data, k)}
    unplaced = replace(config, train=keep, data=replace(config.data, **located))
    return "-".join(_fingerprints(unplaced, splits).values())


# The IMDB job is train_model with an "imdb" configuration (``imdb_preset``); the name stays.
train_imdb = train_model


def evaluate_saved(
    folder: Path,
    data_path: str | None = None,
    cache_dir: str | None = None,
    log: Log = print,
    device: str = "auto",
) -> dict:
    """Loss, accuracy (or MAE) and the detailed report of the model saved in ``folder``: on
    ``data_path`` (labelled, in the training format), or else on the test split it was tested on
    (IMDB: the 25,000 test reviews; a model trained on ``elman encode``'s folder: its test
    file, while the folder is there). ``device``: auto (CUDA when present), cpu or cuda."""
    trained = load(folder)
    trained.model.to(resolve_device(device))
    if cache_dir:  # (for sources that cache, IMDB)
        trained.config = updated(trained.config, {"cache_dir": cache_dir})
    config = trained.config
    encoded = Path(config.train.encoded) if config.train.encoded else None
    if data_path is None and encoded is not None and encoded.is_dir():  # trained from shards
        test = read_encoded(encoded, config.source).test
    else:
        test = SOURCES[config.source].evaluation(
            trained.fitted, Path(data_path) if data_path else None, log
        )
    metrics, report, printed = scored(trained.model, test, config)
    return {**metrics, "samples": len(test), "report": report, "printed": printed}


def predict_saved(
    folder: Path, given: Given, log: Log = print, device: str = "auto"
) -> tuple[Inputs, list[Prediction] | np.ndarray]:
    """What the model saved in ``folder`` says of the inputs ``given`` (texts, files, folders,
    read by its source): a Prediction per sample, or for a forecaster the next values (N, F).
    ``device``: auto (CUDA when present), cpu or cuda."""
    trained = load(folder)
    trained.model.to(resolve_device(device))
    inputs = SOURCES[trained.config.source].inputs(trained.fitted, given, log)
    if trained.model.task == "forecast":
        return inputs, trained.forecast(inputs.x)
    return inputs, trained.predictions(inputs.x)
