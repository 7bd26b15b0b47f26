"""Embedding and Simple RNN fused over token ids: the IMDB model's hot path on CPU.

A word's input projection ``E[w] · W_xᵀ + b`` does not depend on where the word stands, so the
model computes ``table = E · W_xᵀ + b`` (V, H) once per step with autograd, and this kernel reads
one row of it per word. Row b reads ``ids[b, start[b]:]`` from ``h0[b]`` (the model starts each
review after its leading padding, see ``ReviewClassifier``); steps before ``start[b]`` carry
``h0[b]``. Work is proportional to the words actually read, never to the padding.

Backward through time, per row (δ_t = ∂L/∂pre-activation at step t):
    δ_t = (G_t + W_hᵀ δ_{t+1}) ⊙ act'(h_t);  ∂table[ids_t] += δ_t;  ∂W_h += δ_t ⊗ h_{t-1}
Each thread owns a block of rows and its own ∂table and ∂W_h, summed at the end in a fixed
order: deterministic for a given thread count.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from elman.kernels.fused import (
    _ACTIVATION_CODES,
    FASTMATH,
    RELU,
    _copy,
    _dot_rows,
    _partition,
    _step,
)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _forward_rows(ids, table, W_h, h0, start, activation, exact_tanh, states, rows):
    T, H = ids.shape[1], table.shape[1]
    h = np.empty(H, dtype=table.dtype)
    pre = np.empty(H, dtype=table.dtype)
    for b in rows:
        _copy(h0[b], h)
        for t in range(start[b]):
            _copy(h, states[b, t])
        for t in range(start[b], T):
            _copy(table[ids[b, t]], pre)
            _step(pre, W_h, h, activation, exact_tanh)
            _copy(h, states[b, t])


@njit(cache=True, parallel=True, nogil=True)
def _forward(ids, table, W_h, h0, start, activation, exact_tanh, order, bounds):
    B, T, H = ids.shape[0], ids.shape[1], table.shape[1]
    states = np.empty((B, T, H), dtype=table.dtype)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        _forward_rows(ids, table, W_h, h0, start, activation, exact_tanh, states, rows)
    return states


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _backward_rows(
    ids, G, states, h0, W_hT, start, activation, grad_table, grad_W_h, grad_h0, rows
):
    T, H = ids.shape[1], W_hT.shape[0]
    dh = np.empty(H, dtype=G.dtype)
    delta = np.empty(H, dtype=G.dtype)
    for b in rows:
        dh[:] = 0.0
        for t in range(T - 1, start[b] - 1, -1):
            for i in range(H):
                dh[i] += G[b, t, i]
                h = states[b, t, i]
                if activation == RELU:
                    delta[i] = dh[i] if h > 0 else 0.0
                else:
                    delta[i] = dh[i] * (1.0 - h * h)
            row = ids[b, t]
            for i in range(H):
                grad_table[row, i] += delta[i]
            previous = states[b, t - 1] if t > start[b] else h0[b]
            for i in range(H):
                d = delta[i]
                for j in range(H):
                    grad_W_h[i, j] += d * previous[j]
            dh[:] = 0.0
            _dot_rows(W_hT, delta, dh)  # dh = W_hᵀ · delta
        for t in range(start[b]):  # steps that only carried h0
            for i in range(H):
                dh[i] += G[b, t, i]
        _copy(dh, grad_h0[b])


@njit(cache=True, parallel=True, nogil=True)
def _backward(ids, G, states, h0, W_hT, start, activation, vocab_size, order, bounds):
    B, H, threads = ids.shape[0], W_hT.shape[0], bounds.shape[0] - 1
    table_parts = np.zeros((threads, vocab_size, H), dtype=G.dtype)
    W_h_parts = np.zeros((threads, H, H), dtype=G.dtype)
    grad_h0 = np.empty((B, H), dtype=G.dtype)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        _backward_rows(
            ids,
            G,
            states,
            h0,
            W_hT,
            start,
            activation,
            table_parts[k],
            W_h_parts[k],
            grad_h0,
            rows,
        )
    grad_table = table_parts[0].copy()
    grad_W_h = W_h_parts[0].copy()
    for k in range(1, threads):
        grad_table += table_parts[k]
        grad_W_h += W_h_parts[k]
    return grad_table, grad_W_h, grad_h0


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _last_from_ids_rows(ids, table, W_h, h0, start, activation, exact_tanh, out, rows):
    """out[b] = the state after reading ids[b, start[b]:], from h0[b], for b in ``rows``."""
    T, H = ids.shape[1], table.shape[1]
    h = np.empty(H, dtype=table.dtype)
    pre = np.empty(H, dtype=table.dtype)
    for b in rows:
        _copy(h0[b], h)
        for t in range(start[b], T):
            _copy(table[ids[b, t]], pre)  # the step's input projection is a row lookup
            _step(pre, W_h, h, activation, exact_tanh)
        _copy(h, out[b])


@njit(cache=True, parallel=True, nogil=True)
def _last_from_ids(ids, table, W_h, h0, start, activation, exact_tanh, order, bounds):
    B, H = ids.shape[0], table.shape[1]
    out = np.empty((B, H), dtype=table.dtype)
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        _last_from_ids_rows(ids, table, W_h, h0, start, activation, exact_tanh, out, rows)
    return out


def last_state_from_ids(
    ids: Tensor, table: Tensor, W_h: Tensor, h0: Tensor, start: Tensor, activation: str
) -> Tensor:
    """Inference straight from token ids, no autograd: the final state (B, H).

    Without gradients a word's input projection ``E[w]·W_xᵀ + b`` does not depend on where it
    stands, so ``table`` (V, H) holds it once per vocabulary word and each step reads one row:
    no (B, T, E) embeddings, no (B, T, H) projections, no stored states. Row b starts from
    ``h0[b]`` at step ``start[b]``. ids: (B, T) int64, W_h: (H, H), h0: (B, H), start: (B,).
    """
    with torch.no_grad():
        out = _last_from_ids(
            ids.contiguous().numpy(),
            table.detach().contiguous().numpy(),
            W_h.detach().contiguous().numpy(),
            h0.detach().to(table.dtype).contiguous().numpy(),
            start.contiguous().numpy(),
            _ACTIVATION_CODES[activation],
            table.dtype != torch.float32,
            *_partition(ids.shape[1] - start.numpy()),
        )
    return torch.from_numpy(out)


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class EmbeddedRNNFunction(torch.autograd.Function):
    """(ids, start, table, W_h, h0, activation) -> all states (B, T, H)."""

    @staticmethod
    def forward(ctx, ids, start, table, W_h, h0, activation):
        order, bounds = _partition(ids.shape[1] - start.numpy())
        states = torch.from_numpy(
            _forward(
                _numpy(ids),
                _numpy(table),
                _numpy(W_h),
                _numpy(h0),
                _numpy(start),
                _ACTIVATION_CODES[activation],
                table.dtype != torch.float32,
                order,
                bounds,
            )
        )
        ctx.save_for_backward(ids, start, W_h, h0, states)
        ctx.activation, ctx.vocab_size, ctx.partition = activation, table.shape[0], (order, bounds)
        return states

    @staticmethod
    def backward(ctx, grad_states):
        ids, start, W_h, h0, states = ctx.saved_tensors
        grad_table, grad_W_h, grad_h0 = _backward(
            _numpy(ids),
            _numpy(grad_states),
            states.numpy(),
            _numpy(h0),
            _numpy(W_h.T),
            _numpy(start),
            _ACTIVATION_CODES[ctx.activation],
            ctx.vocab_size,
            *ctx.partition,
        )
        return (
            None,
            None,
            torch.from_numpy(grad_table),
            torch.from_numpy(grad_W_h),
            torch.from_numpy(grad_h0),
            None,
        )


def embedded_rnn(
    ids: Tensor, start: Tensor, table: Tensor, W_h: Tensor, h0: Tensor, activation: str
) -> Tensor:
    """All states (B, T, H) of the Simple RNN reading ``table[ids[b, start[b]:]]`` from ``h0``.

    ids: (B, T) int64; start: (B,) int64; table: (V, H) input projection per word;
    W_h: (H, H) recurrent weights; h0: (B, H). Differentiable in table, W_h and h0.
    """
    return EmbeddedRNNFunction.apply(ids, start, table, W_h, h0.to(table.dtype), activation)
