"""The layer on CPU for wide shapes: one matrix-matrix product per step, by torch's BLAS.

The fused kernel (``fused.py``) computes each row's step as a matrix-vector product in a compiled
loop. That stops paying once ``W_h`` leaves the first-level cache or the batch is wide: each row
then streams ``W_h`` from further away, while a matrix-matrix product reads it once per step for
the whole batch. This kernel keeps the rest of the fused design (one matmul for all input
projections, a hand-written backward whose weight gradients are big matmuls, act' computed once
for all steps) and runs each step as ``addmm`` + an in-place activation, writing into one
time-major buffer (T, B, H) so that every step's slice is contiguous. ``elman.kernels`` chooses
between the two by shape (``per_step_products``).

Forward, per step:      S_t = act(P_t + (S_{t-1} ⊙ r) · W_hᵀ)       (r: recurrent dropout or 1)
Backward, per step:     δ_t = (G_t + carry_t) ⊙ act'(S_t);  carry_{t-1} = (δ_t · W_h) ⊙ r
A masked step copies the state forward and passes the gradient straight back (δ_t = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from elman.kernels.fused import input_projection
from elman.kernels.reference import needs_autograd


def _derivative(states: Tensor, activation: str) -> Tensor:
    """act'(pre) from the states themselves: 1 - h² for tanh, [h > 0] for relu."""
    if activation == "tanh":
        return 1 - states * states
    return (states > 0).to(states.dtype)


def _run_steps(P: Tensor, W_hT: Tensor, h0: Tensor, mask, activation: str, recurrent_mask):
    """States (T, B, H), overwriting the time-major projections P (T, B, H) in place."""
    h = h0
    for t in range(P.shape[0]):
        h_in = h if recurrent_mask is None else h * recurrent_mask
        new = P[t].addmm_(h_in, W_hT)
        if activation == "tanh":
            new.tanh_()
        else:
            new.relu_()
        if mask is not None:
            torch.where(mask[t, :, None], new, h, out=P[t])
        h = P[t]
    return P


class StepwiseRNNFunction(torch.autograd.Function):
    """(x, A, b, h0, mask, activation, recurrent_mask) -> all states (B, T, H)."""

    @staticmethod
    def forward(ctx, x, A, b, h0, mask, activation, recurrent_mask):
        states = _forward(x, A, b, h0, mask, activation, recurrent_mask)  # (T, B, H)
        ctx.save_for_backward(x, A, h0, states)
        ctx.mask, ctx.activation, ctx.has_bias = mask, activation, b is not None
        ctx.recurrent_mask = recurrent_mask
        return states.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_states):
        x, A, h0, states = ctx.saved_tensors
        H, (B, T, F) = A.shape[0], x.shape
        W_h, W_x = A[:, :H].contiguous(), A[:, H:]
        mask, drop = ctx.mask, ctx.recurrent_mask
        mask_t = None if mask is None else mask.T.contiguous()  # (T, B)
        delta = grad_states.transpose(0, 1).contiguous()  # (T, B, H): G, overwritten by δ
        derivative = _derivative(states, ctx.activation)
        carry = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = delta[t].add_(carry)
            passed = None if mask_t is None else dh.clone()  # a masked step passes it back
            carry = torch.mm(dh.mul_(derivative[t]), W_h)
            if drop is not None:  # (the step read h_{t-1} ⊙ r)
                carry.mul_(drop)
            if mask_t is not None:
                dh.mul_(mask_t[t, :, None])
                carry = torch.where(mask_t[t, :, None], carry, passed)
        flat_delta = delta.reshape(T * B, H)
        previous = torch.cat([h0[None].to(states.dtype), states[:-1]])  # (T, B, H)
        if drop is not None:
            previous = previous * drop
        grad_A = torch.cat(
            [
                flat_delta.T @ previous.reshape(T * B, H),
                flat_delta.T @ x.transpose(0, 1).reshape(T * B, F),
            ],
            dim=1,
        )
        grad_b = flat_delta.sum(0) if ctx.has_bias else None
        grad_x = (flat_delta @ W_x).reshape(T, B, F).transpose(0, 1)
        grad_x = grad_x if ctx.needs_input_grad[0] else None
        grad_h0 = carry if ctx.needs_input_grad[3] else None
        return grad_x, grad_A, grad_b, grad_h0, None, None, None


def _forward(x, A, b, h0, mask, activation, recurrent_mask) -> Tensor:
    """All states, time-major (T, B, H), without autograd."""
    with torch.no_grad():
        H = A.shape[0]
        P = input_projection(x.transpose(0, 1), A, b).contiguous()  # (T, B, H)
        mask_t = None if mask is None else mask.T.contiguous()
        h0 = h0.to(P.dtype)
        return _run_steps(P, A[:, :H].T.contiguous(), h0, mask_t, activation, recurrent_mask)


def stepwise_rnn(
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """Same contract as ``elman.kernels.reference.reference_rnn``: all states (B, T, H)."""
    if not needs_autograd(x, A, b, h0):
        return _forward(x, A, b, h0, mask, activation, recurrent_mask).transpose(0, 1)
    return StepwiseRNNFunction.apply(x, A, b, h0, mask, activation, recurrent_mask)
