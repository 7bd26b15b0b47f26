"""The layer on CPU for wide shapes: one matrix-matrix product per step, by torch's BLAS.

The fused kernel (``fused.py``) computes each row's step as a matrix-vector product in a compiled
loop. That stops paying once ``W_h`` leaves the first-level cache or the batch is wide: each row
then streams ``W_h`` from further away, while a matrix-matrix product reads it once per step for
the whole batch. This kernel keeps the rest of the fused design (one matmul for all input
projections, a hand-written backward whose weight gradients are big matmuls) and runs each step
as ``addmm_`` + an in-place activation. ``elman.kernels`` chooses between the two kernels by shape
(``per_step_products``).

What makes it fast is memory traffic, not arithmetic: at B=256, T=500, H=128 one pass over a
(B, T, H) tensor costs as much as 200 steps' products on this machine. So everything lives in one
batch-major buffer: the input projection is written straight into the states tensor, which each
step overwrites in place (BLAS reads and writes a step's rows with the buffer's stride), and the
gradients come back batch-major with no transposed copies. The activation and its derivative are
compiled loops over the step's rows (numba, ``loops.tanh_float32``): torch's tanh took six times
as long, half of a whole step.

Forward, per step:      S_t = act(P_t + (S_{t-1} ⊙ r) · W_hᵀ)       (r: recurrent dropout or 1)
Backward, per step:     δ_t = (G_t + carry_t) ⊙ act'(S_t);  carry_{t-1} = (δ_t · W_h) ⊙ r
A masked step copies the state forward and passes the gradient straight back (δ_t = 0).
"""

from __future__ import annotations

import torch
from numba import njit, prange
from torch import Tensor

from elman.kernels.fused import input_projection, weight_gradients
from elman.kernels.loops import ACTIVATION_CODES, ERRORS, FASTMATH, activate, times_derivative
from elman.kernels.reference import needs_autograd


@njit(cache=True, parallel=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _activate_step(states, t, activation, exact_tanh):
    """states[:, t] <- act(states[:, t]) in place; states (B, T, H), rows split between threads."""
    for i in prange(states.shape[0]):
        activate(states[i, t], states[i, t], activation, exact_tanh)


@njit(cache=True, parallel=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _times_derivative_step(delta, states, t, activation):
    """delta[:, t] <- delta[:, t] ⊙ act'(pre_t) (``loops.times_derivative``); delta and states
    (B, T, H), rows split between threads."""
    for i in prange(delta.shape[0]):
        times_derivative(delta[i, t], states[i, t], delta[i, t], activation)


def _forward(x, A, b, h0, mask, activation, recurrent_mask) -> Tensor:
    """All states (B, T, H), without autograd."""
    with torch.no_grad():
        states, H = input_projection(x, A, b), A.shape[0]  # overwritten step by step
        W_hT, h = A[:, :H].T.contiguous(), h0.to(x.dtype)
        array, code, exact = states.numpy(), ACTIVATION_CODES[activation], x.dtype == torch.float64
        for t in range(states.shape[1]):
            h_in = h if recurrent_mask is None else h * recurrent_mask
            new = states[:, t].addmm_(h_in, W_hT)
            _activate_step(array, t, code, exact)
            if mask is not None:
                torch.where(mask[:, t, None], new, h, out=new)
            h = new
        return states


def _backward_steps(delta: Tensor, states: Tensor, W_h: Tensor, activation: str) -> Tensor:
    """δ (B, T, H) in place of G, without mask or dropout: each step's product is added straight
    into the step before's G (one ``addmm_``). Returns ∂L/∂h0 (B, H)."""
    arrays, code = (delta.numpy(), states.numpy()), ACTIVATION_CODES[activation]
    _times_derivative_step(*arrays, delta.shape[1] - 1, code)
    for t in range(delta.shape[1] - 1, 0, -1):
        delta[:, t - 1].addmm_(delta[:, t], W_h)
        _times_derivative_step(*arrays, t - 1, code)
    return delta[:, 0] @ W_h


def _backward_masked_steps(delta, states, W_h, mask, drop, activation: str) -> Tensor:
    """``_backward_steps`` with a mask (B, T) or None, where a masked step passes the gradient
    straight back, and recurrent dropout's (B, H) or None."""
    arrays, code = (delta.numpy(), states.numpy()), ACTIVATION_CODES[activation]
    carry = torch.zeros_like(states[:, 0])
    for t in range(delta.shape[1] - 1, -1, -1):
        dh = delta[:, t].add_(carry)
        passed = None if mask is None else dh.clone()
        _times_derivative_step(*arrays, t, code)
        carry = torch.mm(dh, W_h)
        if drop is not None:  # (the step read h_{t-1} ⊙ r)
            carry.mul_(drop)
        if mask is not None:
            dh.mul_(mask[:, t, None])
            carry = torch.where(mask[:, t, None], carry, passed)
    return carry


class StepwiseRNNFunction(torch.autograd.Function):
    """(x, A, b, h0, mask, activation, recurrent_mask) -> all states (B, T, H)."""

    @staticmethod
    def forward(ctx, x, A, b, h0, mask, activation, recurrent_mask):
        states = _forward(x, A, b, h0, mask, activation, recurrent_mask)
        ctx.save_for_backward(x, A, h0, states)
        ctx.mask, ctx.activation, ctx.has_bias = mask, activation, b is not None
        ctx.recurrent_mask = recurrent_mask
        return states

    @staticmethod
    def backward(ctx, grad_states):
        _, A, _, states = ctx.saved_tensors
        W_h = A[:, : A.shape[0]].contiguous()
        mask, drop = ctx.mask, ctx.recurrent_mask
        delta = grad_states.clone(memory_format=torch.contiguous_format)  # G, overwritten by δ
        if mask is None and drop is None:
            carry = _backward_steps(delta, states, W_h, ctx.activation)
        else:
            carry = _backward_masked_steps(delta, states, W_h, mask, drop, ctx.activation)
        grad_x, grad_A, grad_b = weight_gradients(ctx, delta)
        grad_h0 = carry if ctx.needs_input_grad[3] else None
        return grad_x, grad_A, grad_b, grad_h0, None, None, None


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
        return _forward(x, A, b, h0, mask, activation, recurrent_mask)
    return StepwiseRNNFunction.apply(x, A, b, h0, mask, activation, recurrent_mask)
