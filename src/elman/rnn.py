"""The Simple (Elman) RNN layer: h_t = act(A · [h_{t-1}; x_t] + b).

The whole layer is one matrix ``A`` of shape ``(hidden_size, hidden_size + input_size)`` and an
optional bias ``b`` of shape ``(hidden_size,)``. The first ``hidden_size`` columns of ``A`` act on
the previous state (the recurrent part), the rest on the input.

This module holds the layers a user composes (``SimpleRNN``, ``Bidirectional``, ``Stacked``) and
``RNN``, the drop-in for ``torch.nn.RNN`` built of them: their parameters, their initialisation,
their call contracts. How a step is computed lives in ``elman.kernels``: the textbook formula
and loop (``elman.kernels.reference``) and the fast paths, chosen by one dispatch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from elman.kernels import (
    BACKENDS,
    check_lengths,
    run_backend,
    run_ids,
    run_words,
    words_start,
)
from elman.kernels.reference import ACTIVATIONS, lengths_to_mask

# How ``A`` and ``b`` start (``SimpleRNN(init=...)``, the ``--init`` of every train command):
#   keras       Keras' SimpleRNN: recurrent part orthogonal, input part Glorot-uniform, b = 0
#   orthogonal  both parts orthogonal (Saxe et al. 2014), b = 0
#   identity    recurrent part the identity, input part Glorot-uniform, b = 0; with
#               ``activation="relu"`` this is the IRNN of Le et al. (2015)
#   torch       torch.nn.RNN's: every weight and b uniform in ±1/sqrt(hidden_size)
INITS = ("keras", "orthogonal", "identity", "torch")


def initialize(A: Tensor, b: Tensor | None, hidden_size: int, init: str = "keras") -> None:
    """Fill ``A`` (H, H + F) and ``b`` (H,) in place as ``init`` says (see ``INITS``)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    H, F = hidden_size, A.shape[1] - hidden_size
    with torch.no_grad():
        if init == "torch":
            bound = 1 / math.sqrt(H)
            for weights in (A, b) if b is not None else (A,):
                weights.uniform_(-bound, bound)
            return
        if init == "identity":
            A[:, :H].copy_(torch.eye(H))
        else:
            nn.init.orthogonal_(A[:, :H])
        if init == "orthogonal":
            nn.init.orthogonal_(A[:, H:])
        else:
            limit = math.sqrt(6.0 / (F + H))  # glorot_uniform on the (F, H) input kernel
            A[:, H:].uniform_(-limit, limit)
        if b is not None:
            b.zero_()


def steps_read(
    x: Tensor, input_size: int, lengths: Tensor | None, mask: Tensor | None
) -> Tensor | None:
    """A layer's input x (B, T, input_size) checked, and the steps it reads: ``lengths`` (B,)
    leading steps or ``mask`` (B, T) (one or the other) as a bool mask on x's device; None: all."""
    if x.dim() != 3 or x.shape[-1] != input_size:
        shape = tuple(x.shape)
        raise ValueError(f"expected input of shape (batch, time, {input_size}), got {shape}")
    if lengths is not None and mask is not None:
        raise ValueError("give either lengths or mask, not both")
    if lengths is not None:
        check_lengths(lengths, x.shape[0], x.shape[1])
        return lengths_to_mask(lengths.to(x.device), x.shape[1])
    return None if mask is None else mask.to(device=x.device, dtype=torch.bool)


class SimpleRNN(nn.Module):
    """Elman RNN layer over batch-first input.

    Args:
        input_size: features per step, F.
        hidden_size: state size, H.
        bias: learn ``b`` (H,).
        activation: ``"tanh"`` (default) or ``"relu"``.
        return_sequences: return all states (B, T, H) instead of the last one (B, H).
        return_state: also return the final state (B, H), as ``(output, h_T)``.
        backend: ``"auto"`` (default) picks the fastest correct path for the input: the fused
            kernel on CPU, PyTorch's cuDNN RNN on CUDA. ``"reference"`` is the plain loop
            (``elman.kernels.reference``),
            ``"fused"`` and ``"torch"`` force a path. All compute the same function.
        go_backwards: read each sample's steps last to first and return the states in that
            order (Keras' meaning). Masked or padded steps only carry the state, so a sample
            never starts from its padding.
        dropout: fraction of the input features dropped, in training only; one mask per
            sequence for all its steps (Keras' meaning), scaled by 1 / (1 - dropout).
        recurrent_dropout: the same for ``h_{t-1}`` where it enters each step (variational:
            one mask per sequence), computed inside the fused kernel.
        stateful: the final state of each batch is the initial state of the next (row i
            continues row i) until ``reset_states()``; gradients stop between batches.
        init: how ``A`` and ``b`` start (``INITS``): ``"keras"`` (default) as Keras does,
            Glorot-uniform on the input part of ``A``, orthogonal on the recurrent part, zero
            bias; ``"orthogonal"``, ``"identity"`` (with ``activation="relu"``: the IRNN of Le
            et al. 2015) or ``"torch"`` (``torch.nn.RNN``'s uniform ±1/√H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        activation: str = "tanh",
        return_sequences: bool = False,
        return_state: bool = False,
        backend: str = "auto",
        go_backwards: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        stateful: bool = False,
        init: str = "keras",
    ) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        self.backend = backend
        self.go_backwards, self.stateful = go_backwards, stateful
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self._carried: Tensor | None = None  # a stateful layer's state between batches
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.activation, self.init = activation, init
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.A = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size))
        self.b = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self._ids_cache: dict = {}  # the fused token-id path's inference table (see from_ids)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``A`` and ``b`` again as ``init`` says (see the class docstring)."""
        initialize(self.A, self.b, self.hidden_size, self.init)

    def forward(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, F); h0: (B, H), zeros if None.

        ``lengths`` (B,) counts the valid leading steps of each sample; ``mask`` (B, T) marks valid
        steps anywhere (give one or the other). Invalid steps leave the state unchanged.
        Returns (B, T, H) or (B, H), plus the final state (B, H) when ``return_state``.
        """
        states = self.states(x, h0, lengths=lengths, mask=mask)
        last = states[:, -1] if states.shape[1] > 0 else self._initial_state(x, h0)
        if self.stateful:
            self._carried = last.detach()
        output = states if self.return_sequences else last
        return (output, last) if self.return_state else output

    def reset_states(self) -> None:
        """A stateful layer starts its next batch from zeros again."""
        self._carried = None

    @staticmethod
    def dropout_mask(rows: int, width: int, rate: float, like: Tensor) -> Tensor | None:
        """Keras' dropout mask: (rows, width) of 0 and 1 / (1 - rate), from torch's generator;
        None when ``rate`` is 0."""
        if not rate:
            return None
        keep = torch.full((rows, width), 1 - rate, dtype=like.dtype, device=like.device)
        return torch.bernoulli(keep) / (1 - rate)

    def states(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """All states h_1..h_T (B, T, H), whatever ``return_sequences`` says."""
        mask = steps_read(x, self.input_size, lengths, mask)
        h0 = self._initial_state(x, h0)
        if self.go_backwards:
            x, mask = x.flip(1), None if mask is None else mask.flip(1)
        recurrent_mask = None
        if self.training:  # (both masks: one per sequence, for all its steps)
            input_mask = self.dropout_mask(x.shape[0], self.input_size, self.dropout, x)
            x = x if input_mask is None else x * input_mask[:, None, :]
            recurrent_mask = self.dropout_mask(
                x.shape[0], self.hidden_size, self.recurrent_dropout, x
            )
        return run_backend(
            self.backend, x, self.A, self.b, h0, mask, self.activation, recurrent_mask
        )

    def from_ids(
        self, ids: Tensor, embedding: Tensor, padding_id: int = 0, words_only: bool = False
    ) -> Tensor:
        """The layer over embedded token ids: ``self(F.embedding(ids, embedding))``, computed
        faster. ids: (B, T) int64, embedding: (V, input_size). Returns (B, H), or (B, T, H)
        with ``return_sequences``; zero initial state, padding (``padding_id``) read as input;
        with ``words_only``, masked instead: ``self(F.embedding(ids, embedding), mask=ids !=
        padding_id)``, the state carried over the padding (the fused kernel then starts each
        row at its first word, in either direction, when the padding is in front).

        On CPU the padding every review shares is read once, and the ``fused``/``auto`` backend
        also fuses the embedding lookup into the compiled loop (``elman.kernels.ids``).

        One difference, in training with dropout: the masks apply to the steps that read words,
        not to the padding in front of them, which stays one shared, undropped trajectory (that
        keeps this path's speed; ``self(F.embedding(ids, embedding))`` drops on the padding as
        Keras does). Reading backwards or carrying states, rows differ from the first step on:
        the layer then reads the embedded ids as any input."""
        if words_only:
            return self._words_only(ids, embedding, padding_id)
        if self.go_backwards or self.stateful:
            return self(F.embedding(ids, embedding))
        input_mask = recurrent_mask = None
        if self.training:  # drawn in the order ``states`` draws them
            input_mask = self.dropout_mask(len(ids), self.input_size, self.dropout, embedding)
            recurrent_mask = self.dropout_mask(
                len(ids), self.hidden_size, self.recurrent_dropout, embedding
            )
        return run_ids(
            self.backend,
            ids,
            embedding,
            self.A,
            self.b,
            self.activation,
            padding_id,
            last_only=not self.return_sequences,
            cache=self._ids_cache,
            input_mask=input_mask,
            recurrent_mask=recurrent_mask,
        )

    def _words_only(self, ids: Tensor, embedding: Tensor, padding_id: int) -> Tensor:
        """``from_ids`` with the padding masked: by the token-id kernel where it applies
        (``elman.kernels.run_words``; no input dropout, not stateful), else the layer."""
        start = words_start(self.backend, ids, padding_id, embedding.dtype)
        if start is None or self.stateful or (self.training and self.dropout):
            return self(F.embedding(ids, embedding), mask=ids != padding_id)
        recurrent_mask = None
        if self.training:  # drawn as ``states`` draws it (no input mask here)
            recurrent_mask = self.dropout_mask(
                len(ids), self.hidden_size, self.recurrent_dropout, embedding
            )
        return run_words(
            ids,
            start,
            embedding,
            self.A,
            self.b,
            self.activation,
            self.go_backwards,
            not self.return_sequences,
            recurrent_mask,
        )

    def _initial_state(self, x: Tensor, h0: Tensor | None) -> Tensor:
        if h0 is None and self.stateful and self._carried is not None:
            if len(self._carried) != len(x):
                raise ValueError(
                    f"this stateful layer holds states for {len(self._carried)} rows but got a "
                    f"batch of {len(x)}: keep the batch size, or call reset_states()"
                )
            return self._carried
        return x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bias={self.b is not None}, "
            f"activation={self.activation!r}, return_sequences={self.return_sequences}, "
            f"backend={self.backend!r}"
            + (", go_backwards=True" if self.go_backwards else "")
            + (f", dropout={self.dropout}" if self.dropout else "")
            + (f", recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else "")
            + (", stateful=True" if self.stateful else "")
            + (f", init={self.init!r}" if self.init != "keras" else "")
        )


class Bidirectional(nn.Module):
    """Keras' ``Bidirectional``: the layer reads forwards and a copy of it (its own weights,
    ``go_backwards=True``) reads backwards; their outputs are merged.

    ``merge_mode``: ``"concat"`` (B, [T,] 2H) or ``"sum"`` (B, [T,] H). With
    ``return_sequences``, the backward states are put back in time order before merging, so
    step t holds both directions' states at t. Masks and lengths go to both layers: the
    backward one starts at each sample's last valid step, never at its padding.
    """

    def __init__(self, layer: SimpleRNN, merge_mode: str = "concat") -> None:
        super().__init__()
        if merge_mode not in ("concat", "sum"):
            raise ValueError(f"merge_mode must be 'concat' or 'sum', got {merge_mode!r}")
        if layer.go_backwards or layer.return_state:
            raise ValueError("give the forward layer (go_backwards=False, return_state=False)")
        self.forward_layer, self.merge_mode = layer, merge_mode
        self.backward_layer = copy.deepcopy(layer)
        self.backward_layer.go_backwards = True
        self.backward_layer.reset_parameters()
        self.return_sequences = layer.return_sequences
        self.hidden_size = layer.hidden_size * (2 if merge_mode == "concat" else 1)

    def forward(
        self,
        x: Tensor,
        h0: tuple[Tensor, Tensor] | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, F) -> (B, T, H') with ``return_sequences``, else (B, H'). ``h0``: the
        initial states (B, H) of the forward and the backward layer; None: zeros."""
        ahead, behind = (None, None) if h0 is None else h0
        ahead = self.forward_layer(x, ahead, lengths=lengths, mask=mask)
        return self._merge(ahead, self.backward_layer(x, behind, lengths=lengths, mask=mask))

    def from_ids(
        self, ids: Tensor, embedding: Tensor, padding_id: int = 0, words_only: bool = False
    ) -> Tensor:
        """As ``SimpleRNN.from_ids``, both directions."""
        ahead = self.forward_layer.from_ids(ids, embedding, padding_id, words_only)
        return self._merge(
            ahead, self.backward_layer.from_ids(ids, embedding, padding_id, words_only)
        )

    def _merge(self, ahead: Tensor, behind: Tensor) -> Tensor:
        if self.return_sequences:
            behind = behind.flip(1)  # back in time order
        return torch.cat([ahead, behind], -1) if self.merge_mode == "concat" else ahead + behind


class Stacked(nn.Module):
    """Recurrent layers one on another: each reads the states of the one below (all but the
    last return sequences). Masks and lengths go to every layer. ``hidden_size`` is the width
    of the top layer's output. ``dropout``: ``nn.RNN``'s, on every layer's output but the top
    one's, in training (element by element, step by step; a layer's own ``dropout`` is Keras'
    one mask per sequence on its input)."""

    def __init__(self, layers: list[nn.Module], dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(layers)
        self.return_sequences = layers[-1].return_sequences
        self.hidden_size = layers[-1].hidden_size
        self.dropout = dropout

    @classmethod
    def of(
        cls,
        layer: Callable[[int, bool], nn.Module],
        input_size: int,
        width: int,
        layers: int,
        return_sequences: bool,
    ) -> Stacked:
        """``layers`` made by ``layer(input width, return_sequences)``: the first reads
        ``input_size`` features, the others the ``width`` outputs below; all but the top
        return sequences."""
        widths = [input_size] + [width] * (layers - 1)
        return cls([layer(w, i < layers - 1 or return_sequences) for i, w in enumerate(widths)])

    def forward(
        self,
        x: Tensor,
        h0: list | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, F) -> the top layer's output. ``h0``: one initial state per layer (B, H),
        a pair of them for a ``Bidirectional`` one; None: zeros."""
        return self.outputs(x, h0, lengths=lengths, mask=mask)[-1]

    def outputs(
        self,
        x: Tensor,
        h0: list | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> list[Tensor]:
        """Every layer's output, bottom to top (as ``forward``)."""
        outputs = []
        for index, layer in enumerate(self.layers):
            if index and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            start = None if h0 is None else h0[index]
            x = layer(x, start, lengths=lengths, mask=mask)
            outputs.append(x)
        return outputs

    def from_ids(
        self, ids: Tensor, embedding: Tensor, padding_id: int = 0, words_only: bool = False
    ) -> Tensor:
        """As ``SimpleRNN.from_ids``: the bottom layer reads the token ids (fast for a
        SimpleRNN or a Bidirectional one), the others its states (with ``words_only``, masked
        as it is)."""
        bottom, *rest = self.layers
        x = bottom.from_ids(ids, embedding, padding_id, words_only)
        mask = ids != padding_id if words_only else None
        for layer in rest:
            x = layer(x, mask=mask)
        return x


class RNN(nn.Module):
    """A drop-in for ``torch.nn.RNN``, built of this module's layers: a ``Stacked`` of
    ``SimpleRNN``s (each wrapped in a ``Bidirectional`` when ``bidirectional``), all returning
    sequences, with ``nn.RNN``'s dropout between them.

    Same constructor, same call and return contract: time-major or ``batch_first`` input,
    unbatched (T, F) input, ``h0`` of shape (layers·directions, B, H), ``PackedSequence`` in and
    out, returns ``(output, h_n)``; the same exceptions for a wrong input. Each layer and
    direction is one matrix ``A = [W_hh | W_ih]`` and one bias ``b = b_ih + b_hh``, run by
    ``elman.kernels`` (the fused CPU kernel, cuDNN on CUDA), so the numbers are ``nn.RNN``'s.
    With the same seed, a new ``RNN`` starts from the same function as a new ``nn.RNN`` (same
    draws, same order).

    ``load_state_dict`` takes an ``nn.RNN`` state dict as well as its own (``weight_ih_l0``,
    ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` and the ``_reverse`` ones; the two biases
    add into one), also where the layer sits inside a model (a load-state-dict pre-hook converts
    the names under any prefix), and the names of elman 0.1's ``RNN`` (``A_l0``, ``b_l0``);
    ``torch_state_dict()`` exports ``nn.RNN``'s names back.
    """

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
        # (in nn.RNN's words; ``backend`` is checked by each SimpleRNN, ``dropout`` by Stacked)
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.dropout, self.bidirectional, self.backend = dropout, bidirectional, backend
        self.directions = 2 if bidirectional else 1
        with torch.random.fork_rng(devices=[]):  # (the layers' own draws: reset_parameters
            layers = [self._layer(index) for index in range(num_layers)]  # draws nn.RNN's)
        self.stack = Stacked(layers, dropout)
        if device is not None or dtype is not None:
            self.stack.to(device=device, dtype=dtype)
        self.reset_parameters()
        # nn.RNN's names are converted wherever this layer sits in a model (any prefix).
        self.register_load_state_dict_pre_hook(_from_other_names)

    def _layer(self, index: int) -> SimpleRNN | Bidirectional:
        width = self.input_size if index == 0 else self.hidden_size * self.directions
        layer = SimpleRNN(
            width,
            self.hidden_size,
            bias=self.bias,
            activation=self.nonlinearity,
            return_sequences=True,
            backend=self.backend,
        )
        return Bidirectional(layer) if self.bidirectional else layer

    def _cells(self) -> list[tuple[str, int]]:
        """(name suffix, columns of A) per layer and direction, in nn.RNN's order."""
        return [
            (f"l{layer}{'_reverse' if direction else ''}", self.cell_path(layer, direction))
            for layer in range(self.num_layers)
            for direction in range(self.directions)
        ]

    def cell_path(self, layer: int, direction: int) -> str:
        """Where the ``SimpleRNN`` of one layer and direction sits (its parameters' prefix)."""
        if not self.bidirectional:
            return f"stack.layers.{layer}"
        return f"stack.layers.{layer}.{'backward_layer' if direction else 'forward_layer'}"

    def cell(self, name: str) -> SimpleRNN:
        """The ``SimpleRNN`` of a cell named as nn.RNN names it (``l0``, ``l1_reverse``)."""
        return self.get_submodule(dict(self._cells())[name])

    def reset_parameters(self) -> None:
        """nn.RNN's initialisation, drawn in its order: U(-1/√H, 1/√H) for W_ih, W_hh, b_ih,
        b_hh of each layer and direction (b is b_ih + b_hh)."""
        H, bound = self.hidden_size, 1 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, _ in self._cells():
                cell = self.cell(name)
                w_ih = torch.empty(H, cell.input_size).uniform_(-bound, bound)
                w_hh = torch.empty(H, H).uniform_(-bound, bound)
                cell.A.copy_(torch.cat([w_hh, w_ih], dim=1))
                if self.bias:
                    b_ih = torch.empty(H).uniform_(-bound, bound)
                    b_hh = torch.empty(H).uniform_(-bound, bound)
                    cell.b.copy_(b_ih + b_hh)

    # nn.RNN's state dict, in and out ------------------------------------------------------------

    def torch_state_dict(self) -> dict[str, Tensor]:
        """The weights under nn.RNN's names (``bias_hh`` zero: the bias is one vector here)."""
        H, state = self.hidden_size, {}
        for name, _ in self._cells():
            cell = self.cell(name)
            A = cell.A.detach()
            state[f"weight_ih_{name}"] = A[:, H:].clone()
            state[f"weight_hh_{name}"] = A[:, :H].clone()
            if self.bias:
                b = cell.b.detach()
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
        mask, unbatched = None, False
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
            mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
            mask = mask.to(x.device)
        else:
            self._check_input(input)
            unbatched = input.dim() == 2
            x = input.unsqueeze(1 if not self.batch_first else 0) if unbatched else input
            x = x if self.batch_first else x.transpose(0, 1)
        h0 = None
        if hx is not None:
            hx = self._checked_hx(hx, x.shape[0], unbatched)
            h0 = [tuple(pair) for pair in hx.split(2)] if self.bidirectional else list(hx)
        outputs = self.stack.outputs(x, h0, mask=mask)
        H = self.hidden_size  # (a forward cell ends at the last step, a reverse one at the first)
        ends = [(out[:, -1, :H], out[:, 0, H:]) for out in outputs]
        h_n = torch.stack([end for pair in ends for end in pair[: self.directions]])
        x = outputs[-1]
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

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"nonlinearity={self.nonlinearity!r}, bias={self.bias}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}"
        )


def _from_other_names(
    module: RNN, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load-state-dict pre-hook: a cell given under nn.RNN's names (``weight_ih_l0``, ...) is
    rewritten in place as ``A = [weight_hh | weight_ih]`` and ``b = bias_ih + bias_hh`` of its
    ``SimpleRNN``; elman 0.1's names (``A_l0``, ``b_l0``) are renamed. A cell whose nn.RNN
    names are not all there is left as given, so that ``strict=True`` reports its missing and
    unexpected keys, and ``strict=False`` skips it, as nn.RNN does."""
    for name, path in module._cells():
        ours = (f"{prefix}{path}.A", f"{prefix}{path}.b")
        for old, new in zip((f"{prefix}A_{name}", f"{prefix}b_{name}"), ours, strict=True):
            if old in state_dict:
                state_dict[new] = state_dict.pop(old)
        keys = [prefix + key for key in module.torch_names(name)]
        if not all(key in state_dict for key in keys):
            continue
        weight_hh, weight_ih, *biases = (state_dict.pop(key) for key in keys)
        state_dict[ours[0]] = torch.cat([weight_hh, weight_ih], 1)
        if biases:
            state_dict[ours[1]] = biases[0] + biases[1]


def _packed_like(given: PackedSequence, padded: Tensor, lengths: Tensor) -> PackedSequence:
    """``padded`` (B, T, ...) in original batch order, packed in the layout of ``given`` (same
    batch sizes and sorting), as nn.RNN returns its output."""
    order = given.sorted_indices
    if order is not None:
        padded, lengths = padded.index_select(0, order), lengths[order.cpu()]
    data = pack_padded_sequence(padded, lengths, batch_first=True).data
    return PackedSequence(data, given.batch_sizes, given.sorted_indices, given.unsorted_indices)
