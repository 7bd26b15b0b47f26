"""The Simple (Elman) RNN layer: h_t = act(A · [h_{t-1}; x_t] + b).

The whole layer is one matrix ``A`` of shape ``(hidden_size, hidden_size + input_size)`` and an
optional bias ``b`` of shape ``(hidden_size,)``. The first ``hidden_size`` columns of ``A`` act on
the previous state (the recurrent part), the rest on the input.

This module is the layer a user composes: its parameters, their initialisation, its call
contract. How a step is computed lives in ``elman.kernels``: the textbook formula and loop
(``elman.kernels.reference``) and the fast paths, chosen by one dispatch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from elman.kernels import BACKENDS, run_backend, run_ids
from elman.kernels.reference import ACTIVATIONS, lengths_to_mask


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
            kernel on CPU, PyTorch's cuDNN RNN on CUDA. ``"reference"`` is the loop above,
            ``"fused"`` and ``"torch"`` force a path. All compute the same function.

    Parameters are initialised as Keras does: Glorot-uniform on the input part of ``A``,
    orthogonal on the recurrent part, zero bias.
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
        self.backend = backend
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.activation = activation
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.A = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size))
        self.b = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self._ids_cache: dict = {}  # the fused token-id path's inference table (see from_ids)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' SimpleRNN initialisation (see the class docstring)."""
        H, F = self.hidden_size, self.input_size
        with torch.no_grad():
            nn.init.orthogonal_(self.A[:, :H])
            limit = math.sqrt(6.0 / (F + H))  # glorot_uniform on the (F, H) input kernel
            self.A[:, H:].uniform_(-limit, limit)
            if self.b is not None:
                self.b.zero_()

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
        output = states if self.return_sequences else last
        return (output, last) if self.return_state else output

    def states(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """All states h_1..h_T (B, T, H), whatever ``return_sequences`` says."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input of shape (batch, time, {self.input_size}), got {tuple(x.shape)}"
            )
        if lengths is not None and mask is not None:
            raise ValueError("give either lengths or mask, not both")
        if lengths is not None:
            mask = lengths_to_mask(lengths.to(x.device), x.shape[1])
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
        h0 = self._initial_state(x, h0)
        return run_backend(self.backend, x, self.A, self.b, h0, mask, self.activation)

    def from_ids(self, ids: Tensor, embedding: Tensor, padding_id: int = 0) -> Tensor:
        """The layer over embedded token ids: ``self(F.embedding(ids, embedding))``, computed
        faster. ids: (B, T) int64, embedding: (V, input_size). Returns (B, H), or (B, T, H)
        with ``return_sequences``; zero initial state, padding (``padding_id``) read as input.

        On CPU the padding every review shares is read once, and the ``fused``/``auto`` backend
        also fuses the embedding lookup into the compiled loop (``elman.kernels.ids``)."""
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
        )

    def _initial_state(self, x: Tensor, h0: Tensor | None) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bias={self.b is not None}, "
            f"activation={self.activation!r}, return_sequences={self.return_sequences}, "
            f"backend={self.backend!r}"
        )
