"""The simple (Elman) RNN as a kind of cell: ``rnn`` (the last state, or pooled states, into
the dense layer) and ``rnn-all-states`` (every state, flattened, into it).

The layer is ``elman.rnn.SimpleRNN``; ``layers`` of them ``Stacked``, each ``Bidirectional``
if asked. Token ids go through the fused token-id path (``SimpleRNN.from_ids``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor, nn

from elman.cells.kind import CellKind, LayerSettings, State, Step, WordStates
from elman.kernels.reference import rnn_cell
from elman.rnn import Bidirectional, SimpleRNN, Stacked

# ONNX's names for the activations its RNN operator computes
ONNX_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def build(settings: LayerSettings, input_size: int, return_sequences: bool) -> nn.Module:
    """One ``SimpleRNN``, or ``layers`` of them stacked, each ``Bidirectional`` if asked (then
    the output is 2·hidden_size wide)."""

    def layer(width: int, sequences: bool) -> nn.Module:
        rnn = SimpleRNN(
            width,
            settings.hidden_size,
            activation=settings.activation,
            return_sequences=sequences,
            backend=settings.backend,
            dropout=settings.dropout,
            recurrent_dropout=settings.recurrent_dropout,
            init=settings.init,
        )
        return Bidirectional(rnn) if settings.bidirectional else rnn

    if settings.layers == 1 and not settings.bidirectional:
        return layer(input_size, return_sequences)
    width = settings.hidden_size * (2 if settings.bidirectional else 1)
    return Stacked.of(layer, input_size, width, settings.layers, return_sequences)


def read_words(
    rnn: nn.Module,
    embedding: nn.Embedding,
    ids: Tensor,
    padding_id: int,
    mask_padding: bool,
    layer_by_layer: bool = False,
) -> WordStates:
    """Token ids (B, T) through the embedding and the RNN: the fused token-id path, or with
    ``layer_by_layer`` the embedding first and then the RNN. With ``mask_padding`` the padding
    steps carry the state and are reported unread."""
    if mask_padding:
        words = ids != padding_id
        if layer_by_layer:
            return rnn(embedding(ids), mask=words), words
        return rnn.from_ids(ids, embedding.weight, padding_id, words_only=True), words
    if layer_by_layer:
        return rnn(embedding(ids)), None
    return rnn.from_ids(ids, embedding.weight, padding_id=padding_id), None


def _one_way(rnn: nn.Module) -> SimpleRNN | None:
    """The layer itself when it is one SimpleRNN read forwards; None otherwise."""
    return rnn if isinstance(rnn, SimpleRNN) and not rnn.go_backwards else None


def step(rnn: nn.Module, zero: Tensor) -> tuple[Step, State] | None:
    layer = _one_way(rnn)
    if layer is None:
        return None
    return (lambda h, x: rnn_cell(h, x, layer.A, layer.b, layer.activation)), zero


def recurrent_matrix(rnn: nn.Module) -> Tensor | None:
    """W_hh, the first ``hidden_size`` columns of A (one forward layer only)."""
    layer = _one_way(rnn)
    return None if layer is None else layer.A[:, : layer.hidden_size]


def onnx(rnn: nn.Module) -> dict[str, Any] | None:
    """ONNX RNN's inputs W, R, B from ``A`` and ``b``: one layer read forwards, its last state
    out, an activation ONNX has; None otherwise."""
    layer = _one_way(rnn)
    if layer is None or layer.return_sequences or layer.activation not in ONNX_ACTIVATIONS:
        return None
    H = layer.hidden_size
    A = layer.A.detach().cpu().numpy()
    b = layer.b.detach().cpu().numpy() if layer.b is not None else np.zeros(H, np.float32)
    return {
        "op": "RNN",
        "inputs": {
            "W": A[None, :, H:],
            "R": A[None, :, :H],
            "B": np.concatenate([b, np.zeros(H, np.float32)])[None],
        },
        "attributes": {"hidden_size": H, "activations": [ONNX_ACTIVATIONS[layer.activation]]},
    }


_COMMON: dict[str, Any] = dict(
    build=build,
    read_words=read_words,
    stacks=True,
    inits=True,
    bidirectional=True,
    compiled=True,
    step=step,
    recurrent_matrix=recurrent_matrix,
)
RNN = CellKind(
    name="rnn",
    help="the simple RNN (the reference model: its last state into the dense layer)",
    pools=True,
    chunks=True,
    onnx=onnx,
    **_COMMON,
)
ALL_STATES = CellKind(
    name="rnn-all-states",
    help="the simple RNN, every state flattened into the dense layer",
    texts_only=True,
    all_states=True,
    **_COMMON,
)
