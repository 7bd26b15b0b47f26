"""The independently recurrent network (IndRNN, Li et al. 2018) as a kind of cell: ``indrnn``.

    h_t = act(W · x_t + u ⊙ h_{t-1} + b)

The simple RNN with its recurrent matrix made diagonal: each unit sees only its own past, through
one weight ``u_j``. A unit's gradient through time is then a product of scalars
``u_j · act'(...)``, which ``u_j`` near 1 and ReLU keep from vanishing or exploding over
thousands of steps; the units mix only through the next layer (here: the dense head). Li et
al. start ``u`` uniform in [0, 1], read with ReLU and stack layers: the preset here
(``--activation relu --layers 2``).
The recurrence runs on its own compiled loop (``elman.kernels.diagonal``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from elman.cells.kind import CellKind, LayerSettings, State, Step, read_words_packed
from elman.kernels import BACKENDS, run_diagonal
from elman.kernels.reference import ACTIVATIONS
from elman.rnn import Stacked, steps_read


class IndRNN(nn.Module):
    """IndRNN layer over batch-first input: x (B, T, F) -> the last state (B, H), or every
    state (B, T, H) with ``return_sequences``.

    Parameters: ``W`` (H, F) the input weights (Glorot-uniform), ``u`` (H,) each unit's
    recurrent weight (uniform in [0, 1]), ``b`` (H,) the bias (zero).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        activation: str = "relu",
        return_sequences: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.activation, self.return_sequences, self.backend = activation, return_sequences, backend
        self.W = nn.Parameter(torch.empty(hidden_size, input_size))
        self.u = nn.Parameter(torch.empty(hidden_size))
        self.b = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        limit = math.sqrt(6.0 / (self.input_size + self.hidden_size))
        with torch.no_grad():
            self.W.uniform_(-limit, limit)
            self.u.uniform_(0.0, 1.0)
            self.b.zero_()

    def states(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """All states (B, T, H); steps outside ``lengths`` (B,) or ``mask`` (B, T) carry the
        state."""
        mask = steps_read(x, self.input_size, lengths, mask)
        h0 = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0
        z = torch.nn.functional.linear(x, self.W, self.b)  # every step's input part at once
        return run_diagonal(self.backend, z, self.u, h0, mask, self.activation)

    def forward(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, F), h0 (B, H) or None (zeros) -> (B, H), or (B, T, H) with
        ``return_sequences``."""
        states = self.states(x, h0, lengths=lengths, mask=mask)
        return states if self.return_sequences else states[:, -1]

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, activation={self.activation!r}"


def build(settings: LayerSettings, input_size: int, return_sequences: bool) -> nn.Module:
    """One IndRNN, or ``layers`` of them ``Stacked``: the units of one layer mix only in the
    next one, which is why Li et al. stack them (one layer cannot both gate an input and hold
    it: the adding problem needs two)."""

    def layer(width: int, sequences: bool) -> IndRNN:
        return IndRNN(
            width,
            settings.hidden_size,
            activation=settings.activation,
            return_sequences=sequences,
            backend=settings.backend,
        )

    if settings.layers == 1:
        return layer(input_size, return_sequences)
    return Stacked.of(layer, input_size, settings.hidden_size, settings.layers, return_sequences)


def step(rnn: nn.Module, zero: Tensor) -> tuple[Step, State] | None:
    if not isinstance(rnn, IndRNN):
        return None
    act = ACTIVATIONS[rnn.activation]
    return (lambda h, x: act(x @ rnn.W.T + rnn.b + rnn.u * h)), zero


def recurrent_matrix(rnn: nn.Module) -> Tensor | None:
    """diag(u): the recurrent weights as the (H, H) matrix they are."""
    return torch.diag(rnn.u) if isinstance(rnn, IndRNN) else None


INDRNN = CellKind(
    name="indrnn",
    help="IndRNN (Li et al. 2018): each unit recurrent on itself only, u ⊙ h_(t-1)",
    build=build,
    read_words=read_words_packed,
    pools=True,
    deep=True,
    step=step,
    recurrent_matrix=recurrent_matrix,
    preset={"model": {"activation": "relu", "layers": 2}},
)
