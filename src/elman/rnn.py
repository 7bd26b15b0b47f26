"""The Simple (Elman) RNN layer: h_t = act(A · [h_{t-1}; x_t] + b).

The whole layer is one matrix ``A`` of shape ``(hidden_size, hidden_size + input_size)`` and an
optional bias ``b`` of shape ``(hidden_size,)``. The first ``hidden_size`` columns of ``A`` act on
the previous state (the recurrent part), the rest on the input.

This module holds the *reference* implementation: ``rnn_cell`` is the textbook formula and
``reference_rnn`` a plain loop over time with autograd. Fast kernels live in ``elman.kernels`` and
are tested against this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}


def rnn_cell(h_prev: Tensor, x_t: Tensor, A: Tensor, b: Tensor | None, activation: str) -> Tensor:
    """One step of the Simple RNN: ``act(A · [h_prev; x_t] + b)``.

    h_prev: (B, H), x_t: (B, F), A: (H, H + F), b: (H,) or None. Returns (B, H).
    """
    pre = torch.cat([h_prev, x_t], dim=-1) @ A.T
    if b is not None:
        pre = pre + b
    return ACTIVATIONS[activation](pre)


def reference_rnn(
    x: Tensor, A: Tensor, b: Tensor | None, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """Run ``rnn_cell`` over time, one step after the other.

    x: (B, T, F), h0: (B, H), mask: (B, T) bool or None. Where ``mask[:, t]`` is False the state
    is carried over unchanged, so padded positions have no effect. Returns all states (B, T, H).
    """
    h = h0
    states = []
    for t in range(x.shape[1]):
        h_new = rnn_cell(h, x[:, t], A, b, activation)
        h = h_new if mask is None else torch.where(mask[:, t, None], h_new, h)
        states.append(h)
    return torch.stack(states, dim=1)


def lengths_to_mask(lengths: Tensor, steps: int, padding: str = "post") -> Tensor:
    """(B,) valid lengths -> (B, T) bool mask. ``padding="post"``: the valid steps come first
    (PyTorch's convention); ``"pre"``: they come last (Keras' default for padded reviews)."""
    positions = torch.arange(steps, device=lengths.device)
    if padding == "post":
        return positions[None, :] < lengths[:, None]
    if padding == "pre":
        return positions[None, :] >= (steps - lengths)[:, None]
    raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")


BACKENDS = ("auto", "reference", "fused", "torch")


def run_backend(
    backend: str,
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
) -> Tensor:
    """All states (B, T, H) from the chosen implementation (see ``SimpleRNN``'s ``backend``)."""
    if backend == "auto":
        backend = "torch" if x.is_cuda else "fused" if x.device.type == "cpu" else "reference"
    if backend == "reference":
        return reference_rnn(x, A, b, h0, mask, activation)
    if backend == "fused":
        from elman.kernels.fused import fused_rnn

        return fused_rnn(x, A, b, h0, mask, activation)
    from elman.kernels.torch_rnn import torch_rnn

    return torch_rnn(x, A, b, h0, mask, activation)


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

    def _initial_state(self, x: Tensor, h0: Tensor | None) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bias={self.b is not None}, "
            f"activation={self.activation!r}, return_sequences={self.return_sequences}, "
            f"backend={self.backend!r}"
        )
