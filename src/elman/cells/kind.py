"""What a kind of cell is to the rest of elman: ``CellKind``, the one record a registry line
holds, and ``LayerSettings``, the settings a cell is built from.

A kind is named by ``--model`` (``ModelConfig.architecture`` / ``SequenceConfig.architecture``).
It says what its layer accepts (the rules), builds the layer, reads token ids through it, and
offers what the analysis and export need. Models and checks ask the kind; none branch on a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

# (states, steps read): the layer's output over a batch of token ids, and which steps were
# words (B, T) bool, or None when every step was read
WordStates = tuple[Tensor, Tensor | None]
State = Tensor | tuple[Tensor, Tensor]  # a cell's state: h, or an LSTM's (h, c)
Step = Callable[[State, Tensor], State]


class LayerSettings(Protocol):
    """The settings a recurrent layer is built from (``elman.config.LayerConfig`` has them)."""

    hidden_size: int
    activation: str
    init: str
    backend: str
    layers: int
    bidirectional: bool
    dropout: float
    recurrent_dropout: float
    pooling: str


@dataclass(frozen=True)
class CellKind:
    """One kind of recurrent layer (or, for ``shallow``, none), and everything about it that
    elman needs to know.

    ``build(settings, input_size, return_sequences)`` -> the layer: it maps (B, T, F) (and
    ``lengths=`` (B,)) to its last output (B, W) or all of them (B, T, W), and has a
    ``hidden_size`` attribute that is W. None: the kind has no recurrent layer.
    ``read_words(layer, embedding, ids, padding_id, mask_padding, layer_by_layer)`` reads token
    ids (B, T) -> ``WordStates``.
    ``step(layer, zero)`` -> (step function, zero state) replaying the layer one step at a time
    with its own weights (exact Jacobians in ``elman.analysis``); None: not measured.
    ``recurrent_matrix(layer)`` -> its (H, H) recurrent weights (singular values, spectral
    radius), or None.
    ``onnx(layer)`` -> ONNX's RNN inputs (W, R, B as NumPy arrays) for export, or None.
    """

    name: str
    help: str  # a phrase for ``--model``'s help
    build: Callable[[LayerSettings, int, bool], nn.Module] | None
    read_words: Callable[..., WordStates] | None = None
    texts_only: bool = False  # reads token ids only (no numeric sequences)
    numbers_only: bool = False  # reads numeric sequences only (no token ids)
    all_states: bool = False  # the dense layer reads every state, flattened (T·W features)
    stacks: bool = False  # takes layers, dropout and recurrent_dropout
    deep: bool = False  # takes layers (and not dropout)
    inits: bool = False  # takes ``init`` (how the simple RNN's A starts)
    bidirectional: bool = False  # can read both ways
    pools: bool = False  # its states can be pooled (pooling other than "last")
    chunks: bool = False  # can be read in chunks from a given state (truncated BPTT)
    compiled: bool = False  # runs elman's compiled kernels (worth compiling ahead)
    step: Callable[[nn.Module, Tensor], tuple[Step, State]] | None = None
    recurrent_matrix: Callable[[nn.Module], Tensor] | None = None
    onnx: Callable[[nn.Module], dict[str, Any]] | None = None
    # trained in closed form, not by gradient steps: solve(model, train, val, train settings,
    # log) -> the history (``elman.train.fit`` calls it)
    solve: Callable[..., list[dict]] | None = None
    preset: dict[str, dict[str, Any]] = field(default_factory=dict)  # its defaults, by part


def to_front(x: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """Steps (B, T, F) and which to keep (B, T) bool -> the kept steps moved to the front, in
    order, zeros after them (B, T, F), and how many each row has (B,)."""
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
    moved = torch.gather(x, 1, order[..., None].expand_as(x))
    lengths = kept.sum(1)
    moved = moved * (
        torch.arange(x.shape[1], device=x.device)[None, :, None] < lengths[:, None, None]
    )
    return moved, lengths


def read_words_packed(
    rnn: nn.Module,
    embedding: nn.Embedding,
    ids: Tensor,
    padding_id: int,
    mask_padding: bool,
    layer_by_layer: bool = False,
    min_length: int = 0,
) -> WordStates:
    """``read_words`` for a layer that takes ``lengths`` (the gated kinds, IndRNN): the embedded
    ids (B, T) through the layer, the embedding always first (``layer_by_layer`` changes
    nothing). With ``mask_padding`` the words move to the front (``to_front``) and each row
    reads its leading words only (cuDNN's and PyTorch's way to skip padding): the output and
    which steps it read (B, T). ``min_length``: each row reads at least that many steps (a
    packed cuDNN/PyTorch layer refuses empty rows)."""
    embedded = embedding(ids)
    if not mask_padding:
        return rnn(embedded), None
    words, lengths = to_front(embedded, ids != padding_id)
    read = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    return rnn(words, lengths=lengths.clamp(min=min_length)), read
