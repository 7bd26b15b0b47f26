"""``elman.RNN``: a drop-in for ``torch.nn.RNN`` built on the one-matrix Simple RNN.

Same constructor, same call and return contract: time-major or ``batch_first`` input, unbatched
(T, F) input, ``h0`` of shape (layers·directions, B, H), ``PackedSequence`` in and out, returns
``(output, h_n)``; dropout between layers in training. Each layer and direction is one matrix
``A = [W_hh | W_ih]`` and one bias ``b = b_ih + b_hh`` run by ``elman.kernels`` (the fused CPU
kernel, cuDNN on CUDA), so the numbers are ``nn.RNN``'s.

``load_state_dict`` takes an ``nn.RNN`` state dict as well as its own (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` and the ``_reverse`` ones; the two biases add
into one), also where the layer sits inside a model (a load-state-dict pre-hook converts the
names under any prefix); ``torch_state_dict()`` exports ``nn.RNN``'s names back. With the same
seed, a new ``elman.RNN`` starts from the same function as a new ``nn.RNN`` (same draws, same
order).
"""

from __future__ import annotations

import math
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
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
        where = {"device": device, "dtype": dtype}
        for name, width in self._cells():
            A = nn.Parameter(torch.empty(hidden_size, width, **where))
            self.register_parameter(f"A_{name}", A)
            b = nn.Parameter(torch.empty(hidden_size, **where)) if bias else None
            self.register_parameter(f"b_{name}", b)
        self.reset_parameters()
        # nn.RNN's names are converted wherever this layer sits in a model (any prefix).
        self.register_load_state_dict_pre_hook(_from_torch_names)

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

    def torch_names(self, name: str) -> tuple[str, ...]:
        """nn.RNN's parameter names for one of this layer's cells (``_cells``' suffix)."""
        weights = (f"weight_hh_{name}", f"weight_ih_{name}")
        return weights + ((f"bias_ih_{name}", f"bias_hh_{name}") if self.bias else ())

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
            self._check_input(input)
            unbatched = input.dim() == 2
            x = input.unsqueeze(1 if not self.batch_first else 0) if unbatched else input
            x = x if self.batch_first else x.transpose(0, 1)
        B, H = x.shape[0], self.hidden_size
        if hx is None:
            hx = x.new_zeros(self.num_layers * self.directions, B, H)
        else:
            hx = self._checked_hx(hx, B, unbatched=not packed and unbatched)
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

    def _check_input(self, input: Tensor) -> None:
        """nn.RNN's checks of a padded input, with its exception types and what to do."""
        if input.dim() not in (2, 3):
            raise ValueError(
                f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead: give "
                f"(time, features), (time, batch, features) or, with batch_first, (batch, time, "
                f"features)"
            )
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]}"
            )
        if input.shape[1 if self.batch_first and input.dim() == 3 else 0] == 0:
            raise RuntimeError(
                "Expected sequence length to be larger than 0 in RNN: give at least one step"
            )

    def _checked_hx(self, hx: Tensor, batch: int, unbatched: bool) -> Tensor:
        """hx as (layers·directions, B, H), checked as nn.RNN checks it."""
        if unbatched:
            if hx.dim() != 2:
                raise RuntimeError(
                    f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor"
                )
            hx = hx.unsqueeze(1)
        expected = (self.num_layers * self.directions, batch, self.hidden_size)
        if tuple(hx.shape) != expected:
            raise RuntimeError(
                f"Expected hidden size {expected}, got {list(hx.shape)}: one initial state per "
                f"layer and direction, and per sequence of the batch"
            )
        return hx

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


def _from_torch_names(
    module: RNN, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load-state-dict pre-hook: a cell given under nn.RNN's names (``weight_ih_l0``, ...) is
    rewritten in place as ``A_l0 = [weight_hh | weight_ih]`` and ``b_l0 = bias_ih + bias_hh``.
    A cell whose nn.RNN names are not all there is left as given, so that ``strict=True``
    reports its missing and unexpected keys, and ``strict=False`` skips it, as nn.RNN does."""
    for name, _ in module._cells():
        keys = [prefix + key for key in module.torch_names(name)]
        if not all(key in state_dict for key in keys):
            continue
        weight_hh, weight_ih, *biases = (state_dict.pop(key) for key in keys)
        state_dict[f"{prefix}A_{name}"] = torch.cat([weight_hh, weight_ih], 1)
        if biases:
            state_dict[f"{prefix}b_{name}"] = biases[0] + biases[1]


def _packed_like(given: PackedSequence, padded: Tensor, lengths: Tensor) -> PackedSequence:
    """``padded`` (B, T, ...) in original batch order, packed in the layout of ``given`` (same
    batch sizes and sorting), as nn.RNN returns its output."""
    order = given.sorted_indices
    if order is not None:
        padded, lengths = padded.index_select(0, order), lengths[order.cpu()]
    data = pack_padded_sequence(padded, lengths, batch_first=True).data
    return PackedSequence(data, given.batch_sizes, given.sorted_indices, given.unsorted_indices)
