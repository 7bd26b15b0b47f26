"""The recurrent layer of a classifier as a one-step function, run by a plain loop.

Exact Jacobians need a computation autograd can differentiate both ways (reverse and forward
mode): here the model's recurrence is replayed step by step with its own trained weights, by
the step its kind of cell offers (``elman.cells.CellKind.step``: ``rnn_cell`` for the simple
RNN, ``torch.nn.LSTMCell``/``GRUCell`` for the gated ones).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from elman.cells.kind import State
from elman.errors import UserError
from elman.models import ReviewClassifier


def step_function(model: ReviewClassifier) -> tuple[Callable[[State, Tensor], State], State]:
    """(step, zero state) for the model's recurrence; ``step(state, x_t)`` -> next state."""
    rnn, kind = model.rnn, model.cell
    stepped = None
    if rnn is not None and kind.step is not None:
        stepped = kind.step(rnn, model.embedding.weight.new_zeros(1, rnn.hidden_size))
    if stepped is None:
        raise UserError(
            "gradient flow is measured through one recurrent layer read forwards; this model "
            "has none, stacks layers or reads both ways (train one with `layers` 1, no "
            "`bidirectional`)"
        )
    return stepped


def hidden(state: State) -> Tensor:
    """The hidden state h (1, H) of a state (an LSTM's is (h, c))."""
    return state[0] if isinstance(state, tuple) else state
