"""The recurrent layers of a classifier as one-step functions, run by a plain loop.

Exact Jacobians need a computation autograd can differentiate both ways (reverse and forward
mode): here each model's recurrence is replayed step by step with its own trained weights:
``rnn_cell`` for the simple RNN, ``torch.nn.LSTMCell``/``GRUCell`` for the gated ones.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from elman.errors import UserError
from elman.kernels.reference import rnn_cell
from elman.models import GatedRNN, ReviewClassifier
from elman.rnn import SimpleRNN

State = Tensor | tuple[Tensor, Tensor]


def step_function(model: ReviewClassifier) -> tuple[Callable[[State, Tensor], State], State]:
    """(step, zero state) for the model's recurrence; ``step(state, x_t)`` -> next state."""
    rnn = model.rnn
    if not isinstance(rnn, SimpleRNN | GatedRNN) or getattr(rnn, "directions", 1) > 1:
        raise UserError(
            "gradient flow is measured through one recurrent layer read forwards; this model "
            "stacks layers or reads both ways (train one with --layers 1, no --bidirectional)"
        )
    zero = model.embedding.weight.new_zeros(1, rnn.hidden_size)
    if isinstance(rnn, SimpleRNN):
        return (lambda h, x: rnn_cell(h, x, rnn.A, rnn.b, rnn.activation)), zero
    assert isinstance(rnn, GatedRNN)
    layer = rnn.layer
    cell_type = nn.LSTMCell if rnn.kind == "lstm" else nn.GRUCell
    cell = cell_type(layer.input_size, layer.hidden_size).to(zero)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        setattr(cell, name, getattr(layer, f"{name}_l0"))  # the trained weights themselves
    if rnn.kind == "lstm":
        return (lambda state, x: cell(x, state)), (zero, zero.clone())
    return (lambda h, x: cell(x, h)), zero


def hidden(state: State) -> Tensor:
    """The hidden state h (1, H) of a state (an LSTM's is (h, c))."""
    return state[0] if isinstance(state, tuple) else state
