"""The networks: review classifiers built around ``SimpleRNN``, and their Keras-style summary.

Architectures (``ModelConfig.architecture``: a kind of cell from the registry, ``elman.cells``,
which builds the recurrent layer and says what it can do):
- ``rnn``: Embedding(vocab, E) -> SimpleRNN(H), last state -> Dense(1). The reference model:
  10,000·32 + 2,080 + 33 = 322,113 parameters.
- ``rnn-all-states``: the same, but all states h_1..h_T are flattened into Dense(1)
  (T·H + 1 = 16,001 weights for T=500, H=32).
- ``shallow``: Embedding(vocab, E) on the last ``max_len`` words -> flatten -> Dense(1); the
  naive baseline (E=8, max_len=20).
- ``lstm`` / ``gru``: the reference model with ``torch.nn.LSTM``/``GRU`` of the same width in
  place of the simple RNN, for comparisons (``elman analyze``).

The simple RNN of ``rnn`` can be stacked (``layers``), bidirectional, and read with dropout
(``elman.cells.simple.build``). The dense layer reads its last state, or with ``pooling`` the max
and/or mean of all its states over the steps read (``pooled``), through ``head_dropout``. With
``mask_padding`` a text model reads each review's words only (the state carries over padding).

A review (text) classifier maps ids (B, T) to logits: (B,) for two classes (one sigmoid unit, as
the reference model), (B, C) for C > 2 (softmax). The sigmoid/softmax is applied in the loss
(stable) and in ``predict_proba``.

``SequenceModel`` reads numbers instead of words (time series, speech features): values
(B, T, F) -> the same SimpleRNN (or LSTM/GRU) -> class logits, or next-step predictions
(``task="forecast"``). Missing steps (NaN) are skipped: the state carries over them.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import elman.cells as cells
from elman.cells import to_front
from elman.config import LayerConfig, ModelConfig, RunConfig, SequenceConfig
from elman.data.text import PAD
from elman.errors import UserError


def pooled(states: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """States (B, T, H) -> features (B, H), or (B, 2H) for ``max+mean``: over each row's steps
    read (``mask`` (B, T) True there; None: all steps). A row that read nothing gives zeros."""
    unread = None if mask is None else ~mask.to(states.device)[..., None]
    features = []
    if "max" in pooling:
        lowest = torch.finfo(states.dtype).min
        kept = states if unread is None else states.masked_fill(unread, lowest)
        # max with indices: its backward scatters to one step per unit (amax's compares all)
        highest = kept.max(1).values
        features.append(highest if unread is None else highest.masked_fill(highest == lowest, 0))
    if "mean" in pooling:
        if unread is None:
            features.append(states.mean(1))
        else:
            read = (~unread).sum(1).clamp(min=1)
            features.append(states.masked_fill(unread, 0).sum(1) / read)
    return torch.cat(features, -1)


def head_width(config: LayerConfig, width: int) -> int:
    """The dense layer's inputs for an RNN output ``width`` wide under ``config.pooling``."""
    return width * (2 if config.pooling == "max+mean" else 1)


def keras_dense_init(layer: nn.Linear) -> None:
    """Glorot-uniform weights and zero bias (Keras' Dense defaults; torch uses Kaiming)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


class ReviewClassifier(nn.Module):
    """ids (B, T) int64 -> logits (B,) for two ``classes``, (B, C) for more. See the module
    docstring for the architectures."""

    def __init__(self, config: ModelConfig, classes: int = 2) -> None:
        super().__init__()
        self.config, self.classes = config, check_classes(classes)
        E, T = config.embedding_dim, config.max_len
        self.embedding = nn.Embedding(config.vocab_size, E)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)  # Keras' embedding initializer
        self.cell = cells.kind_of(config.architecture)
        if self.cell.build is None:
            self.rnn = None
            features = T * E
        else:
            sequences = self.cell.all_states or config.pooling != "last"
            self.rnn = self.cell.build(config, E, sequences)
            width = self.rnn.hidden_size
            features = T * width if self.cell.all_states else head_width(config, width)
        self.flatten = nn.Flatten()
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.dense = nn.Linear(features, output_units(classes))
        keras_dense_init(self.dense)

    @property
    def task(self) -> str:
        return "binary" if self.classes == 2 else "multiclass"

    def _head(self, features: Tensor) -> Tensor:
        """Dense layer -> logits (B,) for two classes, (B, C) for more."""
        logits = self.dense(self.head_dropout(self.flatten(features)))
        return logits.squeeze(-1) if self.classes == 2 else logits

    def forward(self, ids: Tensor, *, layer_by_layer: bool = False) -> Tensor:
        """ids (B, T) -> logits. ``layer_by_layer`` runs the embedding and the RNN one after the
        other over every step (the plain path; the summary uses it to see each layer)."""
        return self._head(self.features(ids, layer_by_layer=layer_by_layer))

    def features(
        self, ids: Tensor, embedded: Tensor | None = None, *, layer_by_layer: bool = False
    ) -> Tensor:
        """What the dense layer reads: the (pooled) last state (B, W), or every state (B, T, W)
        (``all_states``; the embeddings for ``shallow``). ``embedded`` (B, T, E): the ids'
        embeddings, given (to take gradients with respect to them), read layer by layer."""
        embedding = self.embedding if embedded is None else (lambda _: embedded)
        if self.rnn is None:
            return embedding(ids)
        # with mask_padding, padding steps carry the state and pooling leaves them out
        states, words = self.cell.read_words(
            self.rnn,
            embedding,
            ids,
            PAD,
            self.config.mask_padding,
            layer_by_layer or embedded is not None,
        )
        if self.config.pooling != "last":
            states = pooled(states, words, self.config.pooling)
        return states

    def all_states(self, ids: Tensor) -> Tensor:
        """Every RNN state (B, T, H) over the padded ids, whatever the model returns."""
        return self.rnn.states(self.embedding(ids))

    @torch.no_grad()
    def predict_proba(self, ids: Tensor) -> Tensor:
        """Two classes: the probability of the second ("positive"), (B,). More: (B, C)."""
        return class_probabilities(self(ids), self.classes)


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are (and so where its batches go)."""
    return next(model.parameters()).device


@torch.no_grad()
def batch_outputs(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> Tensor:
    """The model's raw outputs (logits or predictions) for every row of ``x`` (N, T[, F]), in
    batches of ``batch_size`` on the model's device, in eval mode: (N, ...) on the CPU."""
    model.eval()
    inputs, device = torch.from_numpy(x), device_of(model)
    pieces = [
        model(inputs[i : i + batch_size].to(device, non_blocking=True)).cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(pieces) if pieces else model(inputs[:0].to(device)).cpu()


def check_classes(classes: int) -> int:
    if classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {classes}")
    return classes


def output_units(classes: int) -> int:
    """One sigmoid unit for two classes (as the reference model), else one logit per class."""
    return 1 if classes == 2 else classes


def class_probabilities(logits: Tensor, classes: int) -> Tensor:
    return torch.sigmoid(logits) if classes == 2 else torch.softmax(logits, -1)


def skip_missing(x: Tensor) -> tuple[Tensor, Tensor]:
    """Values (B, T, F) with NaN where a step has no value -> the steps that have values moved to
    the front, in order, zeros after them (B, T, F), and how many each row has (B,).

    A step with any NaN feature counts as missing. Reading only the present steps is what a
    simple RNN does when a mask holds its state over the missing ones."""
    return to_front(torch.nan_to_num(x, nan=0.0), ~torch.isnan(x).any(-1))


class SequenceModel(nn.Module):
    """Values (B, T, F) float, NaN = missing or padding -> logits (B,) (two classes), (B, C)
    (more), or for ``task="forecast"`` predictions (B, T, F) of each next present step.

    ``mean`` and ``std`` (F,) standardise the inputs inside the model, so the statistics of the
    training split travel with the weights (they are buffers, saved in the bundle). Forecasts are
    in standardised units; ``to_values`` turns them back.
    """

    def __init__(self, config: SequenceConfig, classes: int = 2) -> None:
        super().__init__()
        forecast = config.task == "forecast"
        self.config, self.classes = config, classes if forecast else check_classes(classes)
        F_ = config.input_size
        self.register_buffer("mean", torch.zeros(F_))
        self.register_buffer("std", torch.ones(F_))
        self.cell = cells.kind_of(config.architecture, texts=False)
        self.rnn = self.cell.build(config, F_, forecast or config.pooling != "last")
        width = head_width(config, self.rnn.hidden_size)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.dense = nn.Linear(width, F_ if forecast else output_units(classes))
        keras_dense_init(self.dense)

    @property
    def task(self) -> str:
        if self.config.task == "forecast":
            return "forecast"
        return "binary" if self.classes == 2 else "multiclass"

    def forward(self, x: Tensor) -> Tensor:
        if self.config.task == "forecast":
            predictions = self._head(self.features(x))  # zeros after the longest: no target
            return F.pad(predictions, (0, 0, 0, x.shape[1] - predictions.shape[1]))
        return self._head(self.features(x))

    def features(self, x: Tensor) -> Tensor:
        """What the dense layer reads: the (pooled) last state (B, W), or for forecasting the
        states (B, T', W) up to the batch's longest series."""
        values, lengths = skip_missing((x - self.mean) / self.std)
        # Read only as far as the batch's longest series: the rest is padding for every row.
        values = values[:, : max(int(lengths.max()), 1)]
        states = self.rnn(values, lengths=lengths)
        if self.config.task == "forecast" or self.config.pooling == "last":
            return states
        read = torch.arange(values.shape[1], device=x.device)[None, :] < lengths[:, None]
        return pooled(states, read, self.config.pooling)

    def _head(self, features: Tensor) -> Tensor:
        """Dense layer -> next-step predictions (B, T, F), logits (B,) for two classes, or
        (B, C) for more."""
        outputs = self.dense(self.head_dropout(features))
        return outputs.squeeze(-1) if self.task == "binary" else outputs

    def read_chunk(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Read a chunk of steps (B, K >= 1, F) from ``h0`` (B, H) (zeros if None): the outputs
        as ``forward`` gives them for the chunk, and the state after it (B, H). Chained over the
        chunks of a series, the last chunk's outputs are the whole series' (truncated
        backpropagation through time; one simple RNN layer)."""
        cells.check_chunks(self.config, self.config.architecture)
        values, lengths = skip_missing((x - self.mean) / self.std)
        states = self.rnn.states(values, h0, lengths=lengths)
        last = states[:, -1]
        return self._head(states if self.config.task == "forecast" else last), last

    def to_values(self, standardised: Tensor) -> Tensor:
        """Forecasts in standardised units -> the data's own units."""
        return standardised * self.std + self.mean

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        return class_probabilities(self(x), self.classes)


def _network(config: RunConfig) -> ReviewClassifier | SequenceModel:
    network = ReviewClassifier if isinstance(config.model, ModelConfig) else SequenceModel
    return network(config.model, max(len(config.classes), 2))


def build_model(config: RunConfig) -> ReviewClassifier | SequenceModel:
    """The network ``config.model`` describes, with an output for each of ``config.classes``;
    refused (UserError) if its weights alone would not fit in the free memory."""
    check_memory(config)
    return _network(config)


def free_memory() -> int:
    """Bytes the system can still give (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_needed(config: RunConfig, steps: int | None = None) -> int:
    """Bytes a model needs, estimated before anything is allocated (the network is built on
    PyTorch's meta device, which holds shapes only): its weights twice (the model and a copy
    while loading or saving) or, with ``steps`` (training), five times (weights, gradients,
    RMSprop's averages, the best epoch's copy, a checkpoint) plus a batch's activations."""
    weights = 4 * parameter_count(config)
    if steps is None:
        return 2 * weights
    model = config.model
    width = model.hidden_size + getattr(model, "embedding_dim", getattr(model, "input_size", 1))
    activations = 4 * config.train.batch_size * steps * width * 6  # states, gradients, inputs
    return 5 * weights + activations


def check_memory(config: RunConfig, steps: int | None = None) -> None:
    """Refuse with one line what would not fit in memory (rather than crash trying)."""
    needed, free = memory_needed(config, steps), free_memory()
    if needed > free:
        model = config.model
        raise UserError(
            f"this model needs about {needed / 2**30:.1f} GiB of memory"
            f"{' to train' if steps else ''} but {free / 2**30:.1f} GiB are free "
            f"(hidden-size {model.hidden_size}, {parameter_count(config):,} weights): "
            "choose smaller sizes or a smaller --batch-size"
        )


def parameter_count(config: RunConfig) -> int:
    """The network's number of weights, counted without allocating them (meta device)."""
    with torch.device("meta"), _ShapesOnly():
        return count_parameters(_network(config))


class _ShapesOnly(TorchFunctionMode):
    """``torch.nn.init``'s initialisations skipped: a meta tensor has no values to draw, and
    torch's meta ``normal_`` (the embedding's) alone took 1.1 s the first time in a process,
    in every ``elman train``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":  # (each returns its tensor)
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def summary(model: ReviewClassifier | SequenceModel, batch_size: int = 1, steps: int = 100) -> str:
    """A Keras-style table: layer, output shape, parameters, totals, trainable / non-trainable.
    (A SequenceModel is shown reading ``steps`` steps.)"""
    from torchinfo import summary as torchinfo_summary

    model = _on_reference_loops(model)  # (shapes are all it needs: no kernel to compile)
    if isinstance(model, SequenceModel):
        example = torch.zeros(batch_size, steps, model.config.input_size)
    else:
        example = torch.zeros(batch_size, model.config.max_len, dtype=torch.long)
    options = {} if isinstance(model, SequenceModel) else {"layer_by_layer": True}
    stats = torchinfo_summary(
        model,
        input_data=[example],
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        depth=1,
        verbose=0,
        **options,  # passed to forward: every layer runs on its own
    )
    # Keep the Keras part of torchinfo's report (layers, totals); drop its memory estimates.
    lines = str(stats).splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("Non-trainable params"))
    return "\n".join(lines[: end + 1] + [lines[0]])


def _on_reference_loops(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose recurrent layers run their reference loops (plain PyTorch)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = "reference"
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
