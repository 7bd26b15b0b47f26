"""One configuration: every setting of a run, stored once, with its default and a one-line doc.

    RunConfig
      model   ModelConfig (text: ids -> embedding -> RNN -> dense) or SequenceConfig (numbers)
      data    the source's own config (elman.data.imdb.IMDBConfig, ...)
      train   TrainConfig
      source  "imdb", "text", "series" or "speech" (elman.data.SOURCES)
      classes the class names, in the order of the model's outputs

A field's ``setting(default, doc)`` is everything the command line needs: ``elman train``'s
options are generated from these dataclasses (``elman.cli``), so a flag, its default and its
help can never disagree with the code. ``save_config`` writes ``config.json``. This module
knows no data source: a run's defaults for a source (``preset``) and reading ``config.json``
back (``load_config``), which consult the sources' registry, are in ``elman.runs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import elman.cells as cells
from elman.cells import DEFAULT_CELL, INITS
from elman.errors import UserError, require_positive
from elman.files import atomic_write, json_bytes
from elman.kernels import BACKENDS
from elman.kernels.reference import ACTIVATIONS
from elman.settings import choose, json_text, setting

# The files of a saved model folder (see elman.inference; and VOCABULARY, from elman.data.text)
CONFIG, WEIGHTS, HISTORY, METRICS, CHECKPOINT = (
    "config.json",
    "weights.safetensors",
    "history.json",
    "metrics.json",
    "checkpoint.pt",
)


TASKS = ("classify", "forecast")
DEVICES = ("auto", "cpu", "cuda")
CUDA_GRAPHS = ("auto", "off")
POOLINGS = ("last", "max", "mean", "max+mean")
OPTIMIZERS = ("rmsprop", "adam")


@dataclass(kw_only=True)
class LayerConfig:
    """What every network's recurrent layer shares (the fields of ``SimpleRNN`` it sets).

    Every settings dataclass here checks itself when made (``__post_init__``), and so when
    ``dataclasses.replace`` or ``updated`` makes a changed copy: settings are checked once,
    where they are parsed (the command line, ``config.json``, a preset), not by each user."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError

    activation: str = setting("tanh", "the RNN's nonlinearity", choices=tuple(ACTIVATIONS))
    init: str = setting(
        "keras",
        "how the simple RNN's A starts: keras (orthogonal recurrent part, Glorot input part), "
        "orthogonal, identity (with activation relu: IRNN) or torch (nn.RNN's uniform)",
        choices=INITS,
    )
    backend: str = setting(
        "auto",
        "RNN implementation (auto: fused on CPU, cuDNN on CUDA; all compute the same)",
        choices=BACKENDS,
    )

    layers: int = setting(1, "recurrent layers, each reading the states of the one below")
    bidirectional: bool = setting(False, "read forwards and backwards, concatenate the two")
    dropout: float = setting(0.0, "fraction of each layer's inputs dropped in training")
    recurrent_dropout: float = setting(0.0, "fraction of h_(t-1) dropped in training (variational)")
    pooling: str = setting(
        "last",
        "the dense layer reads: last (the final state), or the max, mean or both over the steps "
        "read",
        choices=POOLINGS,
    )
    head_dropout: float = setting(0.0, "fraction of the dense layer's inputs dropped in training")

    def validate_layer(self, architecture: str, texts: bool, forecast: bool = False) -> None:
        """The ranges, then what the kind of cell ``architecture`` accepts (``elman.cells``)."""
        choose(self.activation, tuple(ACTIVATIONS), "activation")
        choose(self.init, INITS, "init")
        choose(self.backend, BACKENDS, "backend")
        choose(self.pooling, POOLINGS, "pooling")
        require_positive(self, "layers")
        for name in ("dropout", "recurrent_dropout", "head_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"`{name}` must be in [0, 1), got {getattr(self, name)}")
        cells.check(self, architecture, texts=texts, forecast=forecast)


@dataclass
class ModelConfig(LayerConfig):
    """A text network: token ids -> embedding -> RNN -> dense (see ``elman.models``)."""

    architecture: str = setting(
        DEFAULT_CELL, cells.describe(texts=True), flag="model", choices=cells.names(texts=True)
    )
    vocab_size: int = setting(10_000, "ids, the 3 reserved ones included")
    embedding_dim: int = setting(32, "embedding size per word")
    hidden_size: int = setting(32, "RNN state size")
    max_len: int = setting(500, "words per text (longer ones keep their end)")
    mask_padding: bool = setting(
        False,
        "read each text's words only: padding carries the state and pooling skips it (the "
        "reference model reads the padding)",
    )

    def validate(self) -> None:
        self.validate_layer(self.architecture, texts=True)
        require_positive(self, "vocab_size", "embedding_dim", "hidden_size", "max_len")
        if self.vocab_size <= 3:
            raise UserError(f"`vocab_size` must exceed the 3 reserved ids, got {self.vocab_size}")


@dataclass
class SequenceConfig(LayerConfig):
    """A network over numeric steps (time series values, speech feature frames)."""

    architecture: str = setting(
        DEFAULT_CELL, cells.describe(texts=False), flag="model", choices=cells.names(texts=False)
    )
    input_size: int = setting(1, "values per step (F)", cli=False)
    hidden_size: int = setting(32, "RNN state size")
    task: str = setting(
        "classify",
        "classify whole series, or forecast each next value (MSE/MAE vs the last value)",
        choices=TASKS,
    )

    spectral_radius: float = setting(0.9, "esn: the reservoir's largest |eigenvalue|")
    input_scaling: float = setting(1.0, "esn: input weights and biases uniform in ±this")
    leak_rate: float = setting(1.0, "esn: a in h_t = (1-a)·h_(t-1) + a·tanh(...) (1: Elman)")
    density: float = setting(0.1, "esn: fraction of the recurrent weights that are non-zero")
    time_scales: int = setting(
        1, "esn: reservoirs side by side, leak rates geometric from 1 down to leak-rate"
    )
    ridge: float | None = setting(
        None, "esn: the readout's ridge penalty (none: chosen by cross-validation)"
    )

    def validate(self) -> None:
        choose(self.task, TASKS, "task")
        self.validate_layer(self.architecture, texts=False, forecast=self.task == "forecast")
        require_positive(
            self, "input_size", "hidden_size", "spectral_radius", "input_scaling", "time_scales"
        )
        for name in ("leak_rate", "density"):
            if not 0 < getattr(self, name) <= 1:
                raise UserError(f"`{name}` must be in (0, 1], got {getattr(self, name)}")
        if self.ridge is not None:
            require_positive(self, "ridge")
        if self.time_scales > self.hidden_size:
            raise UserError(
                f"`time_scales` {self.time_scales} needs a unit each: raise `hidden_size` "
                f"({self.hidden_size})"
            )
        if cells.kind_of(self.architecture, texts=False).solve is None:
            for name in RESERVOIR_SETTINGS:
                if getattr(self, name) != SequenceConfig.__dataclass_fields__[name].default:
                    raise UserError(
                        f"`{name}` shapes an echo-state network's reservoir: use it with "
                        f"`architecture` esn (this model is {self.architecture})"
                    )


RESERVOIR_SETTINGS = (
    "spectral_radius",
    "input_scaling",
    "leak_rate",
    "density",
    "time_scales",
    "ridge",
)


@dataclass
class TrainConfig:
    epochs: int = setting(3, "passes over the training data")
    batch_size: int = setting(32, "samples per step")
    lr: float = setting(1e-3, "learning rate")
    lr_decay: float = setting(1.0, "multiply the learning rate by this after each epoch")
    rho: float = setting(0.9, "RMSprop decay of the squared-gradient average")
    epsilon: float = setting(1e-7, "RMSprop epsilon (inside the square root, as Keras)")
    patience: int | None = setting(
        2, "early stopping: epochs without a better val_loss (none or -1: off)"
    )
    seed: int = setting(0, "seed of initialisation, splits and shuffling")
    threads: int | None = setting(None, "torch and numba threads (none: all cores)")
    optimizer: str = setting(
        "rmsprop", "rmsprop (Keras' RMSprop) or adam (torch's Adam)", choices=OPTIMIZERS
    )
    eval_batch_size: int = setting(1000, "samples per batch when evaluating")
    bucket: bool = setting(False, "batch samples of similar length (not the reference run)")
    clip_norm: float | None = setting(None, "clip the gradient norm to this before each step")
    encoded: str | None = setting(
        None,
        "train on a folder written by elman encode: its shards stream from disk, its data "
        "settings replace the data options",
    )
    tbptt: int | None = setting(
        None,
        "truncated backpropagation through time: read K steps at a time, the state carried, "
        "one update per chunk (numeric sequences, one simple RNN layer; none: whole sequences)",
    )
    checkpoint_every: int | None = setting(
        None, "save a checkpoint every N steps as well as after each epoch (none: every 60 s)"
    )
    device: str = setting(
        "auto", "where to train: auto (CUDA when present), cpu or cuda", choices=DEVICES
    )
    cuda_graph: str = setting(
        "auto",
        "on CUDA, record the training step once in a CUDA graph and replay it for every batch "
        "of the same shape (auto), or launch every kernel of every step (off)",
        choices=CUDA_GRAPHS,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """The settings' ranges and choices (run when made: see ``LayerConfig``)."""
        require_positive(
            self, "epochs", "batch_size", "eval_batch_size", "lr", "epsilon", "lr_decay"
        )
        for name in ("clip_norm", "threads", "checkpoint_every", "tbptt"):
            if getattr(self, name) is not None:
                require_positive(self, name)
        if not 0 <= self.rho < 1:
            raise UserError(f"`rho` must be in [0, 1), got {self.rho}")
        choose(self.device, DEVICES, "device")
        choose(self.cuda_graph, CUDA_GRAPHS, "cuda_graph")
        choose(self.optimizer, OPTIMIZERS, "optimizer")
        if self.patience is not None and self.patience < 0:
            raise UserError(f"`patience` must be >= 0, got {self.patience}")

    def fitted_to(
        self, train_size: int, workers: int = 1, log: Callable[[str], None] = print
    ) -> TrainConfig:
        """These settings for ``train_size`` training samples: a global batch (``batch_size``
        rows for each of ``workers``) larger than the data shrinks to the most rows that fit, so
        that small data trains (what only the data can tell), said in a line to ``log``."""
        if train_size < workers:
            raise UserError(
                f"{workers} workers need a training sample each, and there are {train_size}: "
                "lower `nproc_per_node`"
            )
        if self.batch_size * workers <= train_size:
            return self
        fitted = train_size // workers
        each = f" ({workers} workers: {fitted} rows each)" if workers > 1 else ""
        note = (
            f"The batch size {self.batch_size} is larger than the {train_size} training samples"
            f"{' among the workers' if workers > 1 else ''}: batches of {fitted * workers}{each}"
        )
        log(note)
        return replace(self, batch_size=fitted)


@dataclass
class RunConfig:
    """Everything that defines a run: the network, the data it reads, how it is trained, and
    the names of the classes it tells apart (in the order of its outputs)."""

    model: ModelConfig | SequenceConfig = field(default_factory=ModelConfig)
    data: Any = None  # the source's own settings (elman.data.imdb.IMDBConfig, ...); None: its
    # defaults (``elman.runs`` fills them in)
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str = "imdb"
    classes: list[str] = field(default_factory=list)

    @property
    def reads_text(self) -> bool:
        return isinstance(self.model, ModelConfig)


def updated(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    """``config`` with the fields named in ``values`` (in any of its parts) set to them."""
    parts = {}
    for part in ("model", "data", "train"):
        current = getattr(config, part)
        names = {f.name for f in fields(current)}
        parts[part] = replace(current, **{k: v for k, v in values.items() if k in names})
    return replace(config, **parts)


def save_config(folder: Path, config: Any, kind: str | None = None) -> None:
    """``config.json``: a dataclass (a RunConfig; ``kind`` names any other, such as the
    language model's) and the elman version, written atomically."""
    from elman.version import __version__

    Path(folder).mkdir(parents=True, exist_ok=True)
    saved = {"elman_version": __version__, **({"kind": kind} if kind else {}), **asdict(config)}
    atomic_write(Path(folder) / CONFIG, json_bytes(saved))


def check_class_names(config: RunConfig, where: str) -> None:
    """Class names: distinct non-empty strings, at least two for a classifier."""
    classes = config.classes
    forecast = getattr(config.model, "task", "classify") == "forecast"
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise UserError(f"{where}: classes must be a list of names, got {json_text(classes)}")
    if len(set(classes)) != len(classes) or (not forecast and len(classes) < 2):
        raise UserError(
            f"{where}: classes must be two or more distinct names, got {json_text(classes)}"
        )


def holds_model(folder: Path) -> bool:
    """Whether ``folder`` holds (part of) a saved model."""
    return any((Path(folder) / name).exists() for name in (CONFIG, WEIGHTS, CHECKPOINT))
