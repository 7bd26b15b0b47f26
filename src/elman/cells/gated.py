"""PyTorch's gated RNNs as kinds of cell, for comparison with the simple one: ``lstm`` and
``gru`` (``torch.nn.LSTM``/``GRU`` of the same width, one layer, either direction)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from elman.cells.kind import CellKind, LayerSettings, State, Step, read_words_packed


class GatedRNN(nn.Module):
    """``torch.nn.LSTM`` or ``nn.GRU``, for comparisons: same width, same data, same training as
    the simple RNN, and the same choices of direction and pooling. Returns the last state
    (B, W), or with ``return_sequences`` all of them (B, T, W); W = ``hidden_size``, the output
    width (twice the state when ``bidirectional``)."""

    def __init__(
        self,
        layer: type[nn.LSTM] | type[nn.GRU],
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool = False,
        return_sequences: bool = False,
    ) -> None:
        super().__init__()
        self.return_sequences = return_sequences
        self.directions = 2 if bidirectional else 1
        self.hidden_size = hidden_size * self.directions
        self.layer = layer(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)
        if isinstance(self.layer, nn.LSTM):
            keras_forget_bias(self.layer)

    def _read(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """All states (B, T, W) and the last one of each direction (B, W). With ``lengths``
        (B,), only each row's leading ``lengths`` steps are read (packed); states after them
        are zero, and backwards a row starts at its last step read."""
        if lengths is None:
            states, final = self.layer(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            packed_states, final = self.layer(packed)
            states, _ = nn.utils.rnn.pad_packed_sequence(
                packed_states, batch_first=True, total_length=x.shape[1]
            )
        hidden = final[0] if isinstance(final, tuple) else final  # (directions, B, H)
        return states, torch.cat(list(hidden[-self.directions :]), -1)

    def states(
        self, x: Tensor, h0: Tensor | None = None, *, lengths: Tensor | None = None, **_: object
    ) -> Tensor:
        """All hidden states (B, T, W) from a zero initial state (see ``_read``)."""
        return self._read(x, lengths)[0]

    def forward(self, x: Tensor, *, lengths: Tensor | None = None) -> Tensor:
        states, last = self._read(x, lengths)
        return states if self.return_sequences else last


def keras_forget_bias(lstm: nn.LSTM) -> None:
    """Forget-gate bias 1, as Keras' ``unit_forget_bias=True``: an LSTM then starts out keeping
    its cell state, which is what lets it learn long dependencies at all in a short budget."""
    H = lstm.hidden_size
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_ih"):
                bias[H : 2 * H].fill_(1.0)  # gate order: input, forget, cell, output
            elif name.startswith("bias_hh"):
                bias[H : 2 * H].fill_(0.0)


def _kind(name: str, layer: type[nn.LSTM] | type[nn.GRU], cell: type[nn.RNNCellBase]) -> CellKind:
    def build(settings: LayerSettings, input_size: int, return_sequences: bool) -> GatedRNN:
        return GatedRNN(
            layer,
            input_size,
            settings.hidden_size,
            bidirectional=settings.bidirectional,
            return_sequences=return_sequences,
        )

    def step(rnn: nn.Module, zero: Tensor) -> tuple[Step, State] | None:
        """The trained layer's weights in a ``torch.nn`` cell (forwards only)."""
        if not isinstance(rnn, GatedRNN) or rnn.directions > 1:
            return None
        one_step = cell(rnn.layer.input_size, rnn.layer.hidden_size).to(zero)
        for weight in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(one_step, weight, getattr(rnn.layer, f"{weight}_l0"))  # the trained ones
        if isinstance(one_step, nn.LSTMCell):
            return (lambda state, x: one_step(x, state)), (zero, zero.clone())
        return (lambda h, x: one_step(x, h)), zero

    return CellKind(
        name=name,
        help=f"torch.nn.{layer.__name__} of the same width, to compare",
        build=build,
        # (a packed torch.nn layer refuses rows of no step: each reads at least one)
        read_words=functools.partial(read_words_packed, min_length=1),
        bidirectional=True,
        pools=True,
        step=step,
    )


LSTM = _kind("lstm", nn.LSTM, nn.LSTMCell)
GRU = _kind("gru", nn.GRU, nn.GRUCell)
