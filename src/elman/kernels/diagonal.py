"""IndRNN's diagonal recurrence on CPU (Li et al. 2018): h_t = act(z_t + u ⊙ h_{t-1}).

Each unit is a one-dimensional RNN of its own: a step costs H multiply-adds per row, not the
H² of the simple RNN's matrix. So the layer is one matmul for every step's input part
(z = x · Wᵀ + b, done by PyTorch, with its gradients) and this compiled loop for the rest,
rows in parallel. ``elman.kernels.reference.reference_diagonal`` is the loop it must equal.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from elman.kernels.loops import ACTIVATION_CODES, RELU


@njit(parallel=True, cache=True)
def _forward(Z, u, h0, mask, use_mask, activation, states):
    B, T, H = Z.shape
    for row in prange(B):
        h = h0[row].copy()
        for t in range(T):
            if not use_mask or mask[row, t]:  # (a masked step carries the state)
                for j in range(H):
                    pre = Z[row, t, j] + u[j] * h[j]
                    h[j] = max(pre, 0.0) if activation == RELU else np.tanh(pre)
            states[row, t] = h


@njit(parallel=True, cache=True)
def _backward(G, states, h0, u, mask, use_mask, activation, grad_Z, grad_u_rows, grad_h0):
    B, T, H = G.shape
    for row in prange(B):
        carry = np.zeros(H, G.dtype)  # ∂L/∂h_t from the steps after t
        for t in range(T - 1, -1, -1):
            if use_mask and not mask[row, t]:
                for j in range(H):
                    carry[j] += G[row, t, j]
                continue
            previous = states[row, t - 1] if t > 0 else h0[row]
            for j in range(H):
                grad = G[row, t, j] + carry[j]
                h = states[row, t, j]
                delta = grad * (h > 0.0) if activation == RELU else grad * (1.0 - h * h)
                grad_Z[row, t, j] = delta
                grad_u_rows[row, j] += delta * previous[j]
                carry[j] = delta * u[j]
        grad_h0[row] = carry


def _mask(mask: Tensor | None, batch: int) -> tuple[np.ndarray, bool]:
    if mask is None:
        return np.ones((batch, 1), np.bool_), False
    return mask.contiguous().numpy(), True


class DiagonalFunction(torch.autograd.Function):
    """(z, u, h0, mask, activation) -> all states (B, T, H). CPU tensors, float32/float64."""

    @staticmethod
    def forward(ctx, z, u, h0, mask, activation):
        states = np.empty(tuple(z.shape), dtype=z.numpy().dtype)
        mask_np, use_mask = _mask(mask, z.shape[0])
        code = ACTIVATION_CODES[activation]
        Z, h0_np = z.detach().contiguous().numpy(), h0.detach().to(z.dtype).contiguous().numpy()
        _forward(Z, u.detach().contiguous().numpy(), h0_np, mask_np, use_mask, code, states)
        states = torch.from_numpy(states)
        ctx.save_for_backward(u, h0, states)
        ctx.mask, ctx.code = mask, code
        return states

    @staticmethod
    def backward(ctx, grad_states):
        u, h0, states = ctx.saved_tensors
        mask_np, use_mask = _mask(ctx.mask, states.shape[0])
        grad_Z = np.zeros(tuple(states.shape), states.numpy().dtype)
        grad_u_rows = np.zeros((states.shape[0], states.shape[2]), grad_Z.dtype)
        grad_h0 = np.empty_like(grad_u_rows)
        _backward(
            grad_states.contiguous().numpy(),
            states.numpy(),
            h0.detach().to(states.dtype).contiguous().numpy(),
            u.detach().contiguous().numpy(),
            mask_np,
            use_mask,
            ctx.code,
            grad_Z,
            grad_u_rows,
            grad_h0,
        )
        grad_u = torch.from_numpy(grad_u_rows.sum(0))
        return torch.from_numpy(grad_Z), grad_u, torch.from_numpy(grad_h0), None, None


def diagonal_rnn(z: Tensor, u: Tensor, h0: Tensor, mask: Tensor | None, activation: str) -> Tensor:
    """Same contract as ``reference_diagonal``: all states (B, T, H)."""
    return DiagonalFunction.apply(z, u, h0, mask, activation)
