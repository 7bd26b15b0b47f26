"""``elman.RNN``: a drop-in for ``torch.nn.RNN`` built on the one-matrix Simple RNN.

Same constructor, same call and return contract: time-major or ``batch_first`` input, unbatched
(T, F) input, ``h0`` of shape (layers·directions, B, H), ``PackedSequence`` in and out, returns
``(output, h_n)``; dropout between layers in training. Each layer and direction is one matrix
``A = [W_hh | W_ih]`` and one bias ``b = b_ih + b_hh`` run by ``elman.kernels`` (the fused CPU
kernel, cuDNN on CUDA), so the numbers are ``nn.RNN``'s.

``load_state_dict`` takes an ``nn.RNN`` state dict as well as its own (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` and the ``_reverse`` ones; the two biases add
into one); ``torch_state_dict()`` exports ``nn.RNN``'s names back. With the same seed, a new
``elman.RNN`` starts from the same function as a new ``nn.RNN`` (same draws, same order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from elman.kernels import BACKENDS, run_backend
from elman.kernels.reference import ACTIVATIONS


class RNN(nn.Module):
    """``torch.nn.RNN``'s interface (see the module docstring); ``backend`` as ``SimpleRNN``'s."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if min(input_size, hidden_size, num_layers) <= 0:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.dropout, self.bidirectional, self.backend = dropout, bidirectional, backend
        self.directions = 2 if bidirectional else 1
        for name, width in self._cells():
            self.register_parameter(f"A_{name}", nn.Parameter(torch.empty(hidden_size, width)))
            b = nn.Parameter(torch.empty(hidden_size)) if bias else None
            self.register_parameter(f"b_{name}", b)
        self.reset_parameters()

    def _cells(self) -> list[tuple[str, int]]:
        """(name suffix, columns of A) per layer and direction, in nn.RNN's order."""
        H = self.hidden_size
        return [
            (
                f"l{layer}{'_reverse' if direction else ''}",
                H + (self.input_size if layer == 0 else H * self.directions),
            )
            for layer in range(self.num_layers)
            for direction in range(self.directions)
        ]

    def reset_parameters(self) -> None:
        """nn.RNN's initialisation, drawn in its order: U(-1/√H, 1/√H) for W_ih, W_hh, b_ih,
        b_hh of each layer and direction (b is b_ih + b_hh)."""
        H, bound = self.hidden_size, 1 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, width in self._cells():
                A = getattr(self, f"A_{name}")
                w_ih = torch.empty(H, width - H).uniform_(-bound, bound)
                w_hh = torch.empty(H, H).uniform_(-bound, bound)
                A.copy_(torch.cat([w_hh, w_ih], dim=1))
                if self.bias:
                    b_ih = torch.empty(H).uniform_(-bound, bound)
                    b_hh = torch.empty(H).uniform_(-bound, bound)
                    getattr(self, f"b_{name}").copy_(b_ih + b_hh)

    # nn.RNN's state dict, in and out ------------------------------------------------------------

    def torch_state_dict(self) -> dict[str, Tensor]:
        """The weights under nn.RNN's names (``bias_hh`` zero: the bias is one vector here)."""
        H, state = self.hidden_size, {}
        for name, _ in self._cells():
            A = getattr(self, f"A_{name}").detach()
            state[f"weight_ih_{name}"], state[f"weight_hh_{name}"] = (
                A[:, H:].clone(),
                A[:, :H].clone(),
            )
            if self.bias:
                b = getattr(self, f"b_{name}").detach()
                state[f"bias_ih_{name}"], state[f"bias_hh_{name}"] = b.clone(), torch.zeros_like(b)
        return state

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Its own state dict, or an nn.RNN's (recognised by ``weight_ih_l0``)."""
        if "weight_ih_l0" in state_dict:
            state_dict = self._from_torch_names(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _from_torch_names(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        converted = {}
        for name, _ in self._cells():
            converted[f"A_{name}"] = torch.cat(
                [state[f"weight_hh_{name}"], state[f"weight_ih_{name}"]], 1
            )
            if self.bias:
                converted[f"b_{name}"] = state[f"bias_ih_{name}"] + state[f"bias_hh_{name}"]
        return converted

    # The call ---------------------------------------------------------------------------------

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, Tensor]:
        """As ``nn.RNN.forward``: input (T, B, F), (B, T, F) with ``batch_first``, (T, F), or a
        PackedSequence; hx (layers·directions, B, H) or None. Returns (output, h_n)."""
        packed = isinstance(input, PackedSequence)
        mask = None
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
            mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
            mask = mask.to(x.device)
        else:
            unbatched = input.dim() == 2
            x = input.unsqueeze(1 if not self.batch_first else 0) if unbatched else input
            x = x if self.batch_first else x.transpose(0, 1)
        B, H = x.shape[0], self.hidden_size
        if hx is None:
            hx = x.new_zeros(self.num_layers * self.directions, B, H)
        elif not packed and unbatched:
            hx = hx.unsqueeze(1)
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                states = self._run(x, layer, direction, hx[index], mask)
                outputs.append(states)
                finals.append(states[:, -1] if direction == 0 else states[:, 0])
            x = torch.cat(outputs, dim=-1) if self.directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = torch.stack(finals)
        if packed:
            return _packed_like(input, x, lengths), h_n
        output = x if self.batch_first else x.transpose(0, 1)
        if unbatched:
            return output.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return output, h_n

    def _run(
        self, x: Tensor, layer: int, direction: int, h0: Tensor, mask: Tensor | None
    ) -> Tensor:
        """All states (B, T, H) of one layer and direction; the reverse one reads each
        sequence's valid steps from its last (padding, masked, only carries the state)."""
        name = f"l{layer}{'_reverse' if direction else ''}"
        A, b = getattr(self, f"A_{name}"), getattr(self, f"b_{name}")
        if direction == 0:
            return run_backend(self.backend, x, A, b, h0, mask, self.nonlinearity)
        flipped_mask = None if mask is None else mask.flip(1)
        states = run_backend(self.backend, x.flip(1), A, b, h0, flipped_mask, self.nonlinearity)
        return states.flip(1)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"nonlinearity={self.nonlinearity!r}, bias={self.bias}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}"
        )


def _packed_like(given: PackedSequence, padded: Tensor, lengths: Tensor) -> PackedSequence:
    """``padded`` (B, T, ...) in original batch order, packed in the layout of ``given`` (same
    batch sizes and sorting), as nn.RNN returns its output."""
    order = given.sorted_indices
    if order is not None:
        padded, lengths = padded.index_select(0, order), lengths[order.cpu()]
    data = pack_padded_sequence(padded, lengths, batch_first=True).data
    return PackedSequence(data, given.batch_sizes, given.sorted_indices, given.unsorted_indices)
