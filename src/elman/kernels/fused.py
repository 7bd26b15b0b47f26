"""The fused CPU kernel: one big matmul for all inputs, a compiled loop for the recurrence, and a
hand-written backward through time whose weight gradients are again big matmuls.

Split ``A = [W_h | W_x]``. Forward:
    P   = X · W_xᵀ + b                        one (B·T, F) × (F, H) matmul, by torch
    h_t = act(P_t + W_h · h_{t-1})            sequential: numba, one thread per block of rows
Backward, given G_t = ∂L/∂h_t from above:
    δ_t  = (G_t + W_hᵀ · δ_{t+1}) ⊙ act'(h_t)  sequential: numba   (δ = ∂L/∂pre-activation)
    ∂W_h = Σ_t δ_tᵀ h_{t-1},  ∂W_x = Σ_t δ_tᵀ x_t,  ∂b = Σ_t δ_t,  ∂X = δ · W_x   big matmuls
Masked (padded) steps copy the state forward and pass the gradient straight back (δ_t = 0).

Rows of a batch never interact in the recurrence, so threads split the batch for the whole
sequence and meet only at the end: no per-step synchronisation. Rows run four at a time
(``products_of_four``), grouped by how many steps they read (``partition``: without a mask,
rows 4i..4i+3, the last B mod 4 one by one), the same groups whatever the number of threads,
so the result does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from elman.kernels.loops import (
    ACTIVATION_CODES,
    ERRORS,
    FASTMATH,
    activate,
    call_at,
    compiled_alone,
    copy_row,
    dot_rows,
    drop_arguments,
    dropped_step,
    even_partition,
    partition,
    products_of_four,
    recurrent_products_of_four,
    step,
    times_derivative,
    transposed_for_fours,
)
from elman.kernels.reference import needs_autograd


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _forward_rows(P, W_h, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, states, rows):
    """states[b, t] = act(P[b, t] + W_h · (h[b, t-1] ⊙ drop[b])) for b in ``rows`` (``drop``:
    recurrent dropout's mask, one per row, when ``use_drop``)."""
    T, H = P.shape[1], P.shape[2]
    h = np.empty(H, dtype=P.dtype)
    dropped = np.empty(H, dtype=P.dtype)
    pre = np.empty(H, dtype=P.dtype)
    for b in rows:
        copy_row(h0[b], h)
        for t in range(T):
            if not (use_mask and not mask[b, t]):
                copy_row(P[b, t], pre)
                if use_drop:
                    dropped_step(pre, W_h, h, drop[b], dropped, activation, exact_tanh)
                else:
                    step(pre, W_h, h, activation, exact_tanh)
            copy_row(h, states[b, t])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _forward_four(
    P, W_hT, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, states, rows
):
    """``_forward_rows`` for four rows at once: each step's products for the four rows in one
    pass over W_h (``products_of_four``, with ``W_hT`` = W_hᵀ). A row masked at a step keeps
    its state (its products are computed and dropped; a step that no row reads is skipped)."""
    T, H = P.shape[1], P.shape[2]
    h = np.empty((4, H), dtype=P.dtype)
    read = np.empty((4, H), dtype=P.dtype)  # h ⊙ drop under recurrent dropout
    pre = np.empty((4, H), dtype=P.dtype)
    reads = np.ones(4, dtype=np.bool_)  # which rows read this step
    for r in range(4):
        copy_row(h0[rows[r]], h[r])
    for t in range(T):
        if use_mask:
            for r in range(4):
                reads[r] = mask[rows[r], t]
        if reads.any():
            for r in range(4):
                copy_row(P[rows[r], t], pre[r])
            recurrent_products_of_four(pre, W_hT, h, drop, use_drop, rows, read)
        for r in range(4):
            if reads[r]:
                activate(pre[r], h[r], activation, exact_tanh)
            copy_row(h[r], states[rows[r], t])


def _forward(
    P, W_h, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, order, bounds, fours,
    overwrite,
):  # fmt: skip
    """All states (B, T, H): each thread's block of rows (``_forward_blocks``), the rows'
    functions compiled alone (``compiled_alone``)."""
    options = (h0, mask, use_mask, drop, use_drop, activation, exact_tanh, P, order)  # (P: states)
    return _forward_blocks(
        compiled_alone(_forward_four, (P, W_h, *options)),
        compiled_alone(_forward_rows, (P, W_h, *options)),
        P, W_h, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, order, bounds, fours,
        overwrite,
    )  # fmt: skip


@njit(cache=True, parallel=True, nogil=True, error_model=ERRORS)
def _forward_blocks(
    forward_four, forward_rows, P, W_h, h0, mask, use_mask, drop, use_drop, activation,
    exact_tanh, order, bounds, fours, overwrite,
):  # fmt: skip
    B, T, H = P.shape
    # Each step reads its row of P before it writes its state, so the states may take P's place
    # (one (B, T, H) buffer fewer).
    states = P if overwrite else np.empty((B, T, H), dtype=P.dtype)
    W_hT = transposed_for_fours(W_h, fours)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        grouped = 4 * fours[k]  # rows that run four at a time (``partition``)
        for first in range(0, grouped, 4):
            call_at(forward_four, (
                P, W_hT, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, states,
                rows[first : first + 4],
            ))  # fmt: skip
        call_at(forward_rows, (
            P, W_h, h0, mask, use_mask, drop, use_drop, activation, exact_tanh, states,
            rows[grouped:],
        ))  # fmt: skip
    return states


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _backward_rows(G, states, W_hT, mask, use_mask, drop, use_drop, activation, delta, carry, rows):
    """delta[b, t] = ∂L/∂pre_t for b in ``rows``; carry[b] ends as ∂L/∂h0."""
    T, H = G.shape[1], G.shape[2]
    dh = np.empty(H, dtype=G.dtype)
    for b in rows:
        for i in range(H):
            carry[b, i] = 0.0
        for t in range(T - 1, -1, -1):
            for i in range(H):
                dh[i] = G[b, t, i] + carry[b, i]
            if use_mask and not mask[b, t]:
                for i in range(H):
                    delta[b, t, i] = 0.0
                    carry[b, i] = dh[i]
                continue
            times_derivative(dh, states[b, t], delta[b, t], activation)
            carry[b] = 0.0
            dot_rows(W_hT, delta[b, t], carry[b])  # carry = W_hᵀ · delta
            if use_drop:  # (h_{t-1} entered the step as h_{t-1} ⊙ drop)
                for i in range(H):
                    carry[b, i] *= drop[b, i]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _backward_four(G, states, W_h, mask, use_mask, drop, use_drop, activation, delta, carry, rows):
    """``_backward_rows`` for four rows at once: δ_t · W_h for the four rows in one pass over
    W_h (``products_of_four``), added straight onto the step before's G. A row masked at a
    step has δ = 0 there and passes its gradient straight back."""
    T, H = G.shape[1], G.shape[2]
    step_delta = np.empty((4, H), dtype=G.dtype)
    dh = np.empty((4, H), dtype=G.dtype)  # ∂L/∂h_t: G_t + what came back from step t + 1
    products = np.zeros((4, H), dtype=G.dtype)  # ends as ∂L/∂h0
    reads = np.ones(4, dtype=np.bool_)  # which rows read this step
    for r in range(4):
        if T:
            copy_row(G[rows[r], T - 1], dh[r])
    for t in range(T - 1, -1, -1):
        for r in range(4):
            b = rows[r]
            reads[r] = mask[b, t] if use_mask else True
            if reads[r]:
                times_derivative(dh[r], states[b, t], step_delta[r], activation)
            else:
                step_delta[r] = 0.0
            copy_row(step_delta[r], delta[b, t])
        if t > 0 and not use_drop:  # the products land straight on G_{t-1}
            for r in range(4):
                for i in range(H):  # (a masked row's gradient passes straight back)
                    dh[r, i] = G[rows[r], t - 1, i] + (0.0 if reads[r] else dh[r, i])
            products_of_four(W_h, step_delta, dh)
            continue
        products[:] = 0.0
        products_of_four(W_h, step_delta, products)
        for r in range(4):
            for i in range(H):
                if not reads[r]:
                    products[r, i] = dh[r, i]
                elif use_drop:  # (h_{t-1} entered the step as h_{t-1} ⊙ drop)
                    products[r, i] *= drop[rows[r], i]
                if t > 0:
                    dh[r, i] = products[r, i] + G[rows[r], t - 1, i]
    for r in range(4):
        copy_row(products[r], carry[rows[r]])


def _backward(G, states, W_hT, mask, use_mask, drop, use_drop, activation, order, bounds, fours):
    """δ (B, T, H) and ∂L/∂h0 (B, H): each thread's block of rows (``_backward_blocks``)."""
    options = (mask, use_mask, drop, use_drop, activation, G, W_hT, order)  # (δ, carry: alike)
    return _backward_blocks(
        compiled_alone(_backward_four, (G, states, W_hT, *options)),
        compiled_alone(_backward_rows, (G, states, W_hT, *options)),
        G, states, W_hT, mask, use_mask, drop, use_drop, activation, order, bounds, fours,
    )  # fmt: skip


@njit(cache=True, parallel=True, nogil=True, error_model=ERRORS)
def _backward_blocks(
    backward_four, backward_rows, G, states, W_hT, mask, use_mask, drop, use_drop, activation,
    order, bounds, fours,
):  # fmt: skip
    B, T, H = G.shape
    delta = np.empty((B, T, H), dtype=G.dtype)
    carry = np.empty((B, H), dtype=G.dtype)
    W_h = transposed_for_fours(W_hT, fours)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        grouped = 4 * fours[k]
        for first in range(0, grouped, 4):
            call_at(backward_four, (
                G, states, W_h, mask, use_mask, drop, use_drop, activation, delta, carry,
                rows[first : first + 4],
            ))  # fmt: skip
        call_at(backward_rows, (
            G, states, W_hT, mask, use_mask, drop, use_drop, activation, delta, carry,
            rows[grouped:],
        ))  # fmt: skip
    return delta, carry


_NO_MASK = np.ones((1, 1), dtype=np.bool_)  # (not read: use_mask is False)


def _mask_and_rows(mask: Tensor | None, batch: int) -> tuple:
    """The kernels' mask arguments (array, whether to use it) and rows per thread (order,
    bounds, fours: ``partition``), balanced by how many steps each row computes, in fours of
    rows that read about as many steps (a group computes the products of every step one of its
    rows reads)."""
    if mask is None:
        return _NO_MASK, False, *even_partition(batch)
    mask_np = mask.contiguous().numpy()
    return mask_np, True, *partition(mask_np.sum(1))


def recurrence(
    P: Tensor,
    W_h: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None = None,
    overwrite: bool = False,
) -> Tensor:
    """The sequential part alone: h_t = act(P_t + W_h · (h_{t-1} ⊙ r)), no autograd. P: (B, T, H),
    W_h: (H, H), h0: (B, H), mask: (B, T) bool or None, recurrent_mask r: (B, H) or None.
    Returns all states (B, T, H); with ``overwrite``, in the memory of P (or of its contiguous
    copy), whose values are then lost."""
    mask_np, use_mask, *rows = _mask_and_rows(mask, P.shape[0])
    arguments = (
        P.detach().contiguous().numpy(),
        W_h.detach().contiguous().numpy(),
        h0.detach().to(P.dtype).contiguous().numpy(),
        mask_np,
        use_mask,
        *drop_arguments(recurrent_mask, P.dtype),
        ACTIVATION_CODES[activation],
        P.dtype != torch.float32,  # exact tanh beyond float32
    )
    if P.shape[0] == 1:
        # One row (the padding every review shares, ``ids.start_after_padding``): what
        # ``_forward`` would run on its one thread, called alone. The IMDB model then never
        # compiles ``_forward``'s parallel loop (seconds of compiling on a first run).
        states = arguments[0] if overwrite else np.empty_like(arguments[0])
        _forward_rows(*arguments, states, rows[0])
    else:
        states = _forward(*arguments, *rows, overwrite)
    return torch.from_numpy(states)


def input_projection(x: Tensor, A: Tensor, b: Tensor | None) -> Tensor:
    """P = X · W_xᵀ + b for every time step in one matmul: (B, T, F) -> (B, T, H), a new tensor.
    One ``addmm``: the bias costs no second pass over P."""
    (B, T, F), H = x.shape, A.shape[0]
    flat, W_xT = x.reshape(B * T, F), A[:, H:].T
    P = flat @ W_xT if b is None else torch.addmm(b, flat, W_xT)
    return P.view(B, T, H)


def _recurrent_weight_gradient(delta: Tensor, states: Tensor, h0: Tensor, drop) -> Tensor:
    """∂W_h = Σ_t δ_tᵀ (h_{t-1} ⊙ r), one big product over the flat (B·T, H) rows."""
    (B, T, H), h0 = delta.shape, h0.to(states.dtype)
    if drop is not None:
        previous = torch.cat([h0[:, None], states[:, :-1]], 1) * drop.to(states.dtype)[:, None]
        return delta.view(B * T, H).T @ previous.view(B * T, H)
    # Without dropout, row i's previous state is row i - 1 of the flat states, except at each
    # sequence's first step, where row i - 1 is the row before's last state rather than h0:
    # swap those B terms instead of copying all the states shifted by one step.
    grad = delta.view(B * T, H)[1:].T @ states.view(B * T, H)[:-1]
    grad.addmm_(delta[:, 0].T, h0)
    return grad.addmm_(delta[1:, 0].T, states[:-1, -1], alpha=-1)


def weight_gradients(ctx, delta: Tensor) -> tuple:
    """(∂x, ∂A, ∂b) from δ (B, T, H), contiguous, for a kernel's autograd ``ctx`` (saved
    x, A, h0, states; ``recurrent_mask``, ``has_bias``): big matmuls over all steps at once."""
    x, A, h0, states = ctx.saved_tensors
    (B, T, F), H = x.shape, A.shape[0]
    flat_delta = delta.view(B * T, H)
    grad_W_x = flat_delta.T @ x.reshape(B * T, F)
    grad_W_h = _recurrent_weight_gradient(delta, states, h0, ctx.recurrent_mask)
    grad_b = flat_delta.sum(0) if ctx.has_bias else None
    grad_x = (flat_delta @ A[:, H:]).view(B, T, F) if ctx.needs_input_grad[0] else None
    return grad_x, torch.cat([grad_W_h, grad_W_x], 1), grad_b


class FusedRNNFunction(torch.autograd.Function):
    """(x, A, b, h0, mask, activation, recurrent_mask) -> all states (B, T, H). CPU tensors,
    float32/float64."""

    @staticmethod
    def forward(ctx, x, A, b, h0, mask, activation, recurrent_mask):
        H = A.shape[0]
        P = input_projection(x, A, b)
        states = recurrence(P, A[:, :H], h0, mask, activation, recurrent_mask, overwrite=True)
        ctx.save_for_backward(x, A, h0, states)
        ctx.mask, ctx.activation, ctx.has_bias = mask, activation, b is not None
        ctx.recurrent_mask = recurrent_mask
        return states

    @staticmethod
    def backward(ctx, grad_states):
        return *gradients(ctx, grad_states, deltas), None, None, None


def gradients(ctx, grad_states: Tensor, deltas_of: Callable) -> tuple:
    """(∂x, ∂A, ∂b, ∂h0) for a kernel's autograd ``ctx`` (saved x, A, h0, states; ``mask``,
    ``recurrent_mask``, ``activation``, ``has_bias``): δ by ``deltas_of`` (``deltas``, or its
    operator when traced), then ``weight_gradients``."""
    _, A, _, states = ctx.saved_tensors
    delta, grad_h0 = deltas_of(grad_states, states, A, ctx.mask, ctx.recurrent_mask, ctx.activation)
    grad_x, grad_A, grad_b = weight_gradients(ctx, delta)
    return grad_x, grad_A, grad_b, grad_h0 if ctx.needs_input_grad[3] else None


def deltas(
    grad_states: Tensor,
    states: Tensor,
    A: Tensor,
    mask: Tensor | None,
    recurrent_mask: Tensor | None,
    activation: str,
) -> tuple[Tensor, Tensor]:
    """Backward through time, the sequential part: δ (B, T, H) = ∂L/∂pre-activations and
    ∂L/∂h0 (B, H), from G = ∂L/∂states (B, T, H) and the forward pass's states."""
    W_h = A[:, : A.shape[0]]
    mask_np, use_mask, *rows = _mask_and_rows(mask, states.shape[0])
    delta, grad_h0 = _backward(
        grad_states.contiguous().numpy(),
        states.detach().contiguous().numpy(),
        W_h.detach().T.contiguous().numpy(),
        mask_np,
        use_mask,
        *drop_arguments(recurrent_mask, states.dtype),
        ACTIVATION_CODES[activation],
        *rows,
    )
    return torch.from_numpy(delta), torch.from_numpy(grad_h0)


def fused_rnn(
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """Same contract as ``elman.kernels.reference.reference_rnn``: all states (B, T, H).

    Without gradients (inference, or no input requiring one) it skips autograd altogether, so
    nothing is kept for a backward pass."""
    if not needs_autograd(x, A, b, h0):
        P = input_projection(x, A, b)
        H = A.shape[0]  # (P is ours: the states take its memory)
        return recurrence(P, A[:, :H], h0, mask, activation, recurrent_mask, overwrite=True)
    return FusedRNNFunction.apply(x, A, b, h0, mask, activation, recurrent_mask)
