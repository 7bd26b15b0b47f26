"""Training and evaluation: Keras' RMSprop, binary cross-entropy, early stopping, saved runs.

``train_imdb`` is the whole job behind ``elman train imdb``: load the data, build the model,
print its summary, ``fit``, ``evaluate`` on the test reviews, ``save_run``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elman.data.imdb import IMDBConfig, IMDBData, Split, load_imdb
from elman.data.text import Vocabulary
from elman.errors import UserError, require_positive
from elman.models import ModelConfig, ReviewClassifier, summary


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    rho: float = 0.9
    epsilon: float = 1e-7
    patience: int | None = 2  # epochs without a better val_loss before stopping; None = off
    seed: int = 0
    threads: int | None = None  # torch threads; None leaves torch's choice (all cores)
    eval_batch_size: int = 1000
    bucket: bool = False  # batches of reviews of similar length (faster; see batch_order)

    def validate(self, train_size: int) -> None:
        require_positive(self, "epochs", "batch_size", "eval_batch_size", "lr")
        if self.batch_size > train_size:
            raise UserError(
                f"batch-size {self.batch_size} is larger than the {train_size} training samples"
            )
        if self.patience is not None and self.patience < 0:
            raise UserError(f"patience must be >= 0, got {self.patience}")


class RMSprop(torch.optim.Optimizer):
    """RMSprop as Keras has it: ``v = rho·v + (1-rho)·g²; w -= lr·g / sqrt(v + epsilon)``.

    torch's own RMSprop puts epsilon outside the square root and defaults to lr 0.01, alpha 0.99;
    this matches Keras (lr 0.001, rho 0.9, epsilon 1e-7 inside the root) so runs compare.
    """

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(params, {"lr": lr, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        for group in self.param_groups:
            lr, rho, epsilon = group["lr"], group["rho"], group["epsilon"]
            params = [param for param in group["params"] if param.grad is not None]
            for param in params:
                if not self.state[param]:
                    self.state[param]["square_avg"] = torch.zeros_like(param)
            grads = [param.grad for param in params]
            square_avgs = [self.state[param]["square_avg"] for param in params]
            # One multi-tensor call per operation instead of one per parameter and operation.
            torch._foreach_mul_(square_avgs, rho)
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - rho)
            denominators = torch._foreach_add(square_avgs, epsilon)
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(params, grads, denominators, value=-lr)


def bce_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy on logits (stable) and the fraction classified right."""
    loss = F.binary_cross_entropy_with_logits(logits, y)
    accuracy = ((logits > 0).float() == y).float().mean()
    return loss, accuracy


def batch_order(
    lengths: np.ndarray, batch_size: int, bucket: bool, generator: torch.Generator
) -> list[torch.Tensor]:
    """The rows of each batch of one epoch, shuffled with ``generator``.

    With ``bucket``, the shuffled rows are cut into pools of 50 batches, each pool is sorted by
    review length and cut into batches, and the batches are shuffled: every batch then holds
    reviews of similar length, so little padding is left to compute, while the epoch still
    mixes all lengths in random order.
    """
    order = torch.randperm(len(lengths), generator=generator)
    if bucket:
        pool = batch_size * 50
        lengths_t = torch.from_numpy(np.asarray(lengths))
        order = torch.cat(
            [chunk[torch.argsort(lengths_t[chunk], stable=True)] for chunk in order.split(pool)]
        )
    batches = list(order.split(batch_size))
    if bucket:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


def _tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split.x), torch.from_numpy(split.y)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy over a whole split (averaged per sample)."""
    model.eval()
    x, y = _tensors(split)
    total_loss = total_correct = 0.0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss, accuracy = bce_and_accuracy(logits, target)
        total_loss += loss.item() * len(target)
        total_correct += accuracy.item() * len(target)
    return {"loss": total_loss / len(y), "acc": total_correct / len(y)}


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train with RMSprop on shuffled batches, validate after every epoch, stop early on
    ``val_loss`` and restore the best weights. Returns one dict per epoch (the history)."""
    from tqdm import tqdm

    config.validate(len(train))
    optimizer = RMSprop(model.parameters(), lr=config.lr, rho=config.rho, epsilon=config.epsilon)
    shuffle = torch.Generator().manual_seed(config.seed)
    x, y = _tensors(train)
    history: list[dict[str, float]] = []
    best_loss, best_state, waited = float("inf"), None, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        batches = batch_order(train.lengths, config.batch_size, config.bucket, shuffle)
        steps = len(batches)
        loss_sum = correct_sum = 0.0
        seen = 0
        bar = tqdm(
            total=steps,
            desc=f"Epoch {epoch}/{config.epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        for step, rows in enumerate(batches):
            loss, accuracy = bce_and_accuracy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
            correct_sum += accuracy.item() * len(rows)
            seen += len(rows)
            bar.update()
            if step % 10 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct_sum / seen:.4f}")
        bar.close()
        val_metrics = evaluate(model, val, config.eval_batch_size)
        record = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "acc": correct_sum / seen,
            "val_loss": val_metrics["loss"],
            "val_acc": val_metrics["acc"],
            "seconds": time.perf_counter() - started,
        }
        history.append(record)
        log(
            f"Epoch {epoch}/{config.epochs} - {record['seconds']:.1f}s - loss: {record['loss']:.4f}"
            f" - acc: {record['acc']:.4f} - val_loss: {record['val_loss']:.4f}"
            f" - val_acc: {record['val_acc']:.4f}"
        )
        if config.patience is None:
            continue
        if record["val_loss"] < best_loss:
            best_loss, best_state, waited = record["val_loss"], copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                log(f"Early stopping: val_loss did not improve for {waited} epochs")
                break
    if best_state is not None:
        best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
        if best_epoch != history[-1]["epoch"]:
            log(f"Restoring the weights of epoch {best_epoch} (best val_loss {best_loss:.4f})")
        model.load_state_dict(best_state)
    return history


# Saved runs ------------------------------------------------------------------------------------

WEIGHTS, CONFIG, VOCABULARY, HISTORY, METRICS = (
    "weights.safetensors",
    "config.json",
    "vocabulary.txt",
    "history.json",
    "metrics.json",
)


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder + fsync + rename: never a half file."""
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
    ) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(file.name, path)


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: IMDBConfig = field(default_factory=IMDBConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def save_run(
    out_dir: Path,
    model: ReviewClassifier,
    vocabulary: Vocabulary,
    config: RunConfig,
    history: list[dict[str, float]],
    metrics: dict[str, float],
) -> None:
    """Write weights (safetensors), config, vocabulary, history and metrics into ``out_dir``."""
    from safetensors.torch import save

    from elman import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS, save(state))
    config_json = {"elman_version": __version__, **asdict(config)}
    atomic_write(out_dir / CONFIG, _json(config_json))
    atomic_write(out_dir / VOCABULARY, ("\n".join(vocabulary.words) + "\n").encode())
    atomic_write(out_dir / HISTORY, _json(history))
    atomic_write(out_dir / METRICS, _json(metrics))


def load_run(run_dir: Path) -> tuple[ReviewClassifier, Vocabulary, RunConfig]:
    """The model (weights loaded), vocabulary and configuration saved by ``save_run``."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    for name in (WEIGHTS, CONFIG, VOCABULARY):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a saved elman model: {name} is missing")
    saved = json.loads((run_dir / CONFIG).read_text())
    config = RunConfig(
        model=ModelConfig(**saved["model"]),
        data=IMDBConfig(**saved["data"]),
        train=TrainConfig(**saved["train"]),
    )
    model = ReviewClassifier(config.model)
    try:
        model.load_state_dict(load_file(run_dir / WEIGHTS))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise UserError(f"weights in {run_dir} do not fit its config.json: {first}") from None
    words = (run_dir / VOCABULARY).read_text().splitlines()
    return model, Vocabulary(tuple(words)), config


# The whole job ---------------------------------------------------------------------------------


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


def load_data(config: RunConfig) -> IMDBData:
    return load_imdb(config.data)


def train_imdb(
    config: RunConfig,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, float]:
    """Load IMDB, build and summarise the model, train, test, save. Returns the final metrics."""
    # The data settings decide the model's input: one source of truth for both.
    config = replace(
        config,
        model=replace(config.model, vocab_size=config.data.vocab_size, max_len=config.data.max_len),
    )
    config.model.validate()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    started = time.perf_counter()
    data = load_imdb(config.data)
    log(
        f"IMDB: {len(data.train)} train, {len(data.val)} validation, {len(data.test)} test reviews"
        f" ({time.perf_counter() - started:.1f}s to load)"
    )
    torch.manual_seed(config.train.seed)
    model = ReviewClassifier(config.model)
    log(summary(model))
    history = fit(model, data.train, data.val, config.train, log=log, progress=progress)
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
        save_run(Path(out_dir), model, data.vocabulary, config, history, metrics)
        log(f"Saved to {out_dir}")
    return metrics
