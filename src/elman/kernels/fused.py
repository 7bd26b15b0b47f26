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
sequence and meet only at the end: no per-step synchronisation, and the result does not depend on
the number of threads.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

TANH, RELU = 0, 1
_ACTIVATION_CODES = {"tanh": TANH, "relu": RELU}

# tanh for float32 as a rational function (the minimax fit Eigen uses): libm's scalar tanh was
# 80% of the forward pass; this one vectorises and stays within 3e-7 relative error of the
# exact value (float32 rounding is 6e-8). float64 keeps the exact np.tanh.
_F32 = np.float32
_ALPHA = [
    _F32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
]
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = _ALPHA
_B0, _B2, _B4, _B6 = (
    _F32(c)
    for c in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)
_CLAMP = _F32(7.99881172180175781)  # tanh rounds to ±1 in float32 beyond this


@njit(inline="always")
def _tanh_float32(x):
    # Written so that NaN falls through both comparisons: a NaN input gives NaN, as np.tanh.
    c = _CLAMP if x > _CLAMP else x
    c = -_CLAMP if c < -_CLAMP else c
    c2 = c * c
    p = ((((((c2 * _A13 + _A11) * c2 + _A9) * c2 + _A7) * c2 + _A5) * c2 + _A3) * c2 + _A1) * c
    q = ((c2 * _B6 + _B4) * c2 + _B2) * c2 + _B0
    return p / q


@njit(inline="always")
def _activate(pre, out, activation, exact_tanh):
    """out[i] = act(pre[i]) over a row; branches are loop-invariant, so each loop vectorises."""
    if activation == RELU:
        for i in range(pre.shape[0]):
            out[i] = pre[i] if pre[i] > 0 else 0.0
    elif exact_tanh:
        for i in range(pre.shape[0]):
            out[i] = np.tanh(pre[i])
    else:
        for i in range(pre.shape[0]):
            out[i] = _tanh_float32(pre[i])


# The kernels may reassociate sums (so LLVM vectorises each dot product) and fuse multiply-adds;
# nothing else of fastmath (NaN and infinity still propagate, so a diverging loss is seen). The
# order is fixed when the kernel is compiled: every run gives the same bits.
FASTMATH = {"reassoc", "contract"}


@njit(inline="always")
def _copy(source, target):
    """target[:] = source, as a plain loop (numba's slice assignment costs more for 32 floats)."""
    for i in range(source.shape[0]):
        target[i] = source[i]


@njit(inline="always")
def _dot_rows(M, v, out):
    """out[i] += M[i, :] · v, for a small square M (each row a contiguous dot product)."""
    n = v.shape[0]
    for i in range(n):
        s = out[i]
        for j in range(n):
            s += M[i, j] * v[j]
        out[i] = s


@njit(inline="always")
def _step(pre, W_h, h, activation, exact_tanh):
    """h <- act(pre + W_h · h), with ``pre`` holding the input projection on entry."""
    _dot_rows(W_h, h, pre)
    _activate(pre, h, activation, exact_tanh)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _forward_rows(P, W_h, h0, mask, use_mask, activation, exact_tanh, states, rows):
    """states[b, t] = act(P[b, t] + W_h · h[b, t-1]) for b in ``rows``."""
    T, H = P.shape[1], P.shape[2]
    h = np.empty(H, dtype=P.dtype)
    pre = np.empty(H, dtype=P.dtype)
    for b in rows:
        _copy(h0[b], h)
        for t in range(T):
            if not (use_mask and not mask[b, t]):
                _copy(P[b, t], pre)
                _step(pre, W_h, h, activation, exact_tanh)
            _copy(h, states[b, t])


@njit(cache=True, parallel=True, nogil=True)
def _forward(P, W_h, h0, mask, use_mask, activation, exact_tanh, order, bounds):
    B, T, H = P.shape
    states = np.empty((B, T, H), dtype=P.dtype)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        _forward_rows(P, W_h, h0, mask, use_mask, activation, exact_tanh, states, rows)
    return states


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _backward_rows(G, states, W_hT, mask, use_mask, activation, delta, carry, rows):
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
            for i in range(H):
                h = states[b, t, i]
                if activation == TANH:
                    delta[b, t, i] = dh[i] * (1.0 - h * h)
                else:
                    delta[b, t, i] = dh[i] if h > 0 else 0.0
            carry[b] = 0.0
            _dot_rows(W_hT, delta[b, t], carry[b])  # carry = W_hᵀ · delta


@njit(cache=True, parallel=True, nogil=True)
def _backward(G, states, W_hT, mask, use_mask, activation, order, bounds):
    B, T, H = G.shape
    delta = np.empty((B, T, H), dtype=G.dtype)
    carry = np.empty((B, H), dtype=G.dtype)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        _backward_rows(G, states, W_hT, mask, use_mask, activation, delta, carry, rows)
    return delta, carry


def _partition(work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows for each thread, balanced by ``work`` (B,), the steps each row computes.

    Longest rows first, each to the least-loaded thread (reviews differ in length tenfold, so
    equal row counts leave one core idle). Returns ``order`` (B,) and ``bounds``
    (threads + 1,): thread k takes rows ``order[bounds[k]:bounds[k + 1]]``. Depends only on
    ``work`` and the thread count, so results are reproducible."""
    threads = max(1, min(len(work), torch.get_num_threads()))
    load = [0] * threads
    assigned: list[list[int]] = [[] for _ in range(threads)]
    for row in np.argsort(-np.asarray(work), kind="stable"):
        k = load.index(min(load))
        assigned[k].append(int(row))
        load[k] += int(work[row])
    order = np.array([row for rows in assigned for row in sorted(rows)], dtype=np.int64)
    bounds = np.cumsum([0] + [len(rows) for rows in assigned]).astype(np.int64)
    return order, bounds


def _mask_and_rows(mask: Tensor | None, batch: int, steps: int) -> tuple:
    """The kernels' mask arguments (array, whether to use it) and rows per thread (order,
    bounds), balanced by how many steps each row computes."""
    if mask is None:
        work = np.full(batch, steps)
        return np.ones((batch, steps), dtype=np.bool_), False, *_partition(work)
    mask_np = mask.contiguous().numpy()
    return mask_np, True, *_partition(mask_np.sum(1))


def recurrence(P: Tensor, W_h: Tensor, h0: Tensor, mask: Tensor | None, activation: str) -> Tensor:
    """The sequential part alone: h_t = act(P_t + W_h · h_{t-1}), no autograd. P: (B, T, H),
    W_h: (H, H), h0: (B, H), mask: (B, T) bool or None. Returns all states (B, T, H)."""
    mask_np, use_mask, order, bounds = _mask_and_rows(mask, P.shape[0], P.shape[1])
    states = _forward(
        P.detach().contiguous().numpy(),
        W_h.detach().contiguous().numpy(),
        h0.detach().to(P.dtype).contiguous().numpy(),
        mask_np,
        use_mask,
        _ACTIVATION_CODES[activation],
        P.dtype != torch.float32,  # exact tanh beyond float32
        order,
        bounds,
    )
    return torch.from_numpy(states)


def input_projection(x: Tensor, A: Tensor, b: Tensor | None) -> Tensor:
    """P = X · W_xᵀ + b for every time step in one matmul: (B, T, F) -> (B, T, H)."""
    P = x @ A[:, A.shape[0] :].T
    return P if b is None else P + b


class FusedRNNFunction(torch.autograd.Function):
    """(x, A, b, h0, mask, activation) -> all states (B, T, H). CPU tensors, float32/float64."""

    @staticmethod
    def forward(ctx, x, A, b, h0, mask, activation):
        H = A.shape[0]
        states = recurrence(input_projection(x, A, b), A[:, :H], h0, mask, activation)
        ctx.save_for_backward(x, A, h0, states)
        ctx.mask, ctx.activation, ctx.has_bias = mask, activation, b is not None
        return states

    @staticmethod
    def backward(ctx, grad_states):
        x, A, h0, states = ctx.saved_tensors
        H = A.shape[0]
        W_h, W_x = A[:, :H], A[:, H:]
        mask_np, use_mask, order, bounds = _mask_and_rows(ctx.mask, x.shape[0], x.shape[1])
        delta, grad_h0 = _backward(
            grad_states.contiguous().numpy(),
            states.numpy(),
            W_h.detach().T.contiguous().numpy(),
            mask_np,
            use_mask,
            _ACTIVATION_CODES[ctx.activation],
            order,
            bounds,
        )
        delta, grad_h0 = torch.from_numpy(delta), torch.from_numpy(grad_h0)
        flat_delta = delta.reshape(-1, H)  # (B·T, H)
        previous = torch.cat([h0[:, None], states[:, :-1]], dim=1).reshape(-1, H)
        grad_A = torch.cat(
            [flat_delta.T @ previous, flat_delta.T @ x.reshape(-1, x.shape[-1])], dim=1
        )
        grad_b = flat_delta.sum(0) if ctx.has_bias else None
        grad_x = delta @ W_x if ctx.needs_input_grad[0] else None
        grad_h0 = grad_h0 if ctx.needs_input_grad[3] else None
        return grad_x, grad_A, grad_b, grad_h0, None, None


def fused_rnn(
    x: Tensor, A: Tensor, b: Tensor | None, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """Same contract as ``elman.rnn.reference_rnn``: all states (B, T, H).

    Without gradients (inference, or no input requiring one) it skips autograd altogether, so
    nothing is kept for a backward pass."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, A, b, h0)
    )
    if not needs_grad:
        return recurrence(input_projection(x, A, b), A[:, : A.shape[0]], h0, mask, activation)
    return FusedRNNFunction.apply(x, A, b, h0, mask, activation)
