"""Predicting the next word: the simple RNN as a word-level language model on IMDB reviews.

The same ``SimpleRNN`` with ``return_sequences=True`` reads a window of words and a dense layer
with a softmax over the vocabulary predicts, at every position, the word that comes next. It is
trained on the archive's 50,000 unlabelled reviews (``aclImdb/train/unsup``) and validated on
held-out ones; its quality is the validation perplexity, exp(mean cross-entropy per word).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elman.config import save_config
from elman.data.imdb import read_unlabeled, resolve_source
from elman.data.text import OOV, RESERVED, Vocabulary, rank_words, tokenize
from elman.errors import UserError
from elman.inference import save_files
from elman.rnn import SimpleRNN
from elman.settings import setting
from elman.train import RMSprop, StepOptions, train_step


@dataclass
class LMConfig:
    data: str | None = setting(None, "aclImdb archive (none: $ELMAN_DATA, else download)")
    reviews: int = setting(12_000, "unlabelled reviews to train on (of 50,000)")
    val_reviews: int = setting(1_000, "held-out unlabelled reviews for perplexity")
    vocab_size: int = setting(10_000, "ids, the 3 reserved ones included")
    embedding_dim: int = setting(32, "embedding size per word")
    hidden_size: int = setting(32, "RNN state size")
    window: int = setting(50, "words per training sequence")
    batch_size: int = setting(64, "sequences per step")
    epochs: int = setting(1, "passes over the training windows")
    lr: float = setting(3e-3, "RMSprop learning rate (gradient norm clipped at 5)")
    seed: int = setting(0, "seed of the split, initialisation and shuffling")


class WordLanguageModel(nn.Module):
    """ids (B, W) -> next-word logits (B, W, V): Embedding -> SimpleRNN (all states) -> Dense."""

    task = "multiclass"  # a class (the next word) per step, for elman.train

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = SimpleRNN(config.embedding_dim, config.hidden_size, return_sequences=True)
        self.dense = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        return self.dense(self.rnn(self.embedding(ids)))


def _windows(texts: list[str], vocabulary: Vocabulary, window: int) -> Tensor:
    """All reviews as one stream of ids (each starting with START), cut into (N, window + 1)."""
    stream = np.fromiter(
        (i for text in texts for i in vocabulary.encode(tokenize(text))), dtype=np.int64
    )
    count = (len(stream) - 1) // window
    starts = np.arange(count) * window
    return torch.from_numpy(stream[starts[:, None] + np.arange(window + 1)])


def perplexity(model: WordLanguageModel, windows: Tensor, batch_size: int = 256) -> float:
    """exp(mean cross-entropy per predicted word) over ``windows`` (N, W + 1)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            batch = windows[i : i + batch_size]
            logits = model(batch[:, :-1])
            total += float(
                F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum")
            )
            count += batch[:, 1:].numel()
    return math.exp(total / count)


def train_language_model(
    config: LMConfig, out_dir: Path, log: Callable[[str], None] = print
) -> dict[str, float]:
    """Train on unlabelled reviews, report validation perplexity, save to ``out_dir``."""
    started = time.perf_counter()
    texts = read_unlabeled(resolve_source(config.data), config.reviews + config.val_reviews)
    if len(texts) < config.reviews + config.val_reviews:
        raise UserError(f"the archive has only {len(texts)} unlabelled reviews; ask for fewer")
    order = np.random.default_rng(config.seed).permutation(len(texts))
    train_texts = [texts[i] for i in order[: config.reviews]]
    val_texts = [texts[i] for i in order[config.reviews :]]
    vocabulary = Vocabulary.from_ranked(rank_words(map(tokenize, train_texts)), config.vocab_size)
    train, val = (_windows(t, vocabulary, config.window) for t in (train_texts, val_texts))
    log(f"{len(train_texts)} reviews -> {train.numel():,} training words in {len(train)} windows")
    torch.manual_seed(config.seed)
    model = WordLanguageModel(config)
    optimizer = RMSprop(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_started = time.perf_counter()
        for rows in torch.randperm(len(train), generator=generator).split(config.batch_size):
            batch = train[rows]  # each word predicts the next
            train_step(model, optimizer, batch[:, :-1], batch[:, 1:], StepOptions(clip_norm=5.0))
        val_perplexity = perplexity(model, val)
        history.append(
            {
                "epoch": epoch,
                "val_perplexity": val_perplexity,
                "seconds": time.perf_counter() - epoch_started,
            }
        )
        log(
            f"Epoch {epoch}/{config.epochs} - {history[-1]['seconds']:.0f}s - "
            f"val perplexity {val_perplexity:.1f}"
        )
    unigram = _unigram_perplexity(train, val, config.vocab_size)
    metrics = {
        "val_perplexity": history[-1]["val_perplexity"],
        "unigram_perplexity": unigram,
        "val_oov_rate": float((val[:, 1:] == OOV).float().mean()),
        "total_seconds": time.perf_counter() - started,
    }
    log(
        f"Validation perplexity {metrics['val_perplexity']:.1f} (word frequencies alone: "
        f"{unigram:.1f})"
    )
    save_config(out_dir, config, kind="language model")
    save_files(out_dir, model, vocabulary, history, metrics)
    return metrics


def _unigram_perplexity(train: Tensor, val: Tensor, vocab_size: int) -> float:
    """The baseline that ignores context: each word predicted by its training frequency."""
    counts = torch.bincount(train[:, 1:].flatten(), minlength=vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    return math.exp(-float(log_p[val[:, 1:].flatten()].mean()))


def load_language_model(folder: Path) -> tuple[WordLanguageModel, Vocabulary]:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a saved language model: config.json is missing")
    saved = json.loads((folder / "config.json").read_text())
    config = LMConfig(**{f.name: saved[f.name] for f in fields(LMConfig) if f.name in saved})
    model = WordLanguageModel(config)
    model.load_state_dict(load_file(folder / "weights.safetensors"))
    words = tuple((folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    return model.eval(), Vocabulary(words)


def next_words(
    model: WordLanguageModel, vocabulary: Vocabulary, text: str, k: int = 5
) -> list[tuple[str, float]]:
    """The ``k`` most likely next words after ``text``, with their probabilities."""
    ids = torch.tensor([vocabulary.encode(tokenize(text))])
    with torch.no_grad():
        probabilities = torch.softmax(model(ids)[0, -1], dim=-1)
    probabilities[: len(RESERVED)] = 0  # padding, start and "unknown word" are not words
    top = torch.topk(probabilities, k)
    return [(vocabulary.words[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]
