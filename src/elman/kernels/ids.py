"""Embedding and Simple RNN fused over token ids: the IMDB model's hot path on CPU.

Two ideas, each exact:

1. **Padding read once.** Reviews are padded at the front and, as in the reference model, the
   RNN reads the padding too. But every review's padding is the same input read from the same
   zero state, so the states over it are ONE trajectory shared by all reviews: compute it once,
   on a single row, start each review from that trajectory at its own padding length, and skip
   its padded steps (``start_after_padding``). Same function, same gradients (autograd flows
   through the shared row), and about half the work: the median review fills 176 of 500 steps.
   ``elman.kernels.run_ids`` uses this for every CPU backend.
2. **Embedding fused into the recurrence.** A word's input projection ``E[w] · W_xᵀ + b`` does
   not depend on where the word stands, so ``table = E · W_xᵀ + b`` (V, H) is computed once per
   step with autograd, and the compiled loop reads one row of it per word. Row b reads
   ``ids[b, start[b]:]`` from ``h0[b]``; steps before ``start[b]`` carry ``h0[b]``. Work is
   proportional to the words actually read, never to the padding.

Backward through time, per row (δ_t = ∂L/∂pre-activation at step t):
    δ_t = (G_t + W_hᵀ δ_{t+1}) ⊙ act'(h_t);  ∂table[ids_t] += δ_t;  ∂W_h += δ_t ⊗ h_{t-1}
Each thread owns a block of rows and its own ∂table and ∂W_h, summed at the end in a fixed
order: deterministic for a given thread count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
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
    outer_products_of_four,
    partition,
    products_of_four,
    recurrent_products_of_four,
    step,
    times_derivative,
)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _read_rows(
    ids, table, W_h, h0, start, drop, use_drop, activation, exact_tanh, keep, states, out, rows
):
    """For b in ``rows``: read ids[b, start[b]:] from h0[b]; out[b] = the last state and, with
    ``keep``, states[b, t] = every state (h0[b] over the steps before start[b]). With
    ``use_drop``, each step reads h_{t-1} ⊙ drop[b] (recurrent dropout, one mask per row)."""
    T, H = ids.shape[1], table.shape[1]
    h = np.empty(H, dtype=table.dtype)
    dropped = np.empty(H, dtype=table.dtype)
    pre = np.empty(H, dtype=table.dtype)
    for b in rows:
        copy_row(h0[b], h)
        if keep:
            for t in range(start[b]):
                copy_row(h, states[b, t])
        for t in range(start[b], T):
            copy_row(table[ids[b, t]], pre)  # the step's input projection is a row lookup
            if use_drop:
                dropped_step(pre, W_h, h, drop[b], dropped, activation, exact_tanh)
            else:
                step(pre, W_h, h, activation, exact_tanh)
            if keep:
                copy_row(h, states[b, t])
        copy_row(h, out[b])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _read_four(
    ids, table, W_hT, h0, start, drop, use_drop, activation, exact_tanh, keep, states, out, rows
):
    """``_read_rows`` for four rows at once: from the earliest of their starts, each step's
    products for the four in one pass over W_h (``products_of_four``, ``W_hT`` = W_hᵀ); a row
    whose words have not started yet keeps h0 (its products are computed and dropped)."""
    T, H = ids.shape[1], table.shape[1]
    h = np.empty((4, H), dtype=table.dtype)
    read = np.empty((4, H), dtype=table.dtype)  # h ⊙ drop under recurrent dropout
    pre = np.empty((4, H), dtype=table.dtype)
    first = T
    for r in range(4):
        b = rows[r]
        first = min(first, start[b])
        copy_row(h0[b], h[r])
        if keep:
            for t in range(start[b]):
                copy_row(h[r], states[b, t])
    for t in range(first, T):
        for r in range(4):
            copy_row(table[ids[rows[r], t]], pre[r])
        recurrent_products_of_four(pre, W_hT, h, drop, use_drop, rows, read)
        for r in range(4):
            b = rows[r]
            if t >= start[b]:
                activate(pre[r], h[r], activation, exact_tanh)
                if keep:
                    copy_row(h[r], states[b, t])
    for r in range(4):
        copy_row(h[r], out[rows[r]])


def _read(
    ids, table, W_h, h0, start, drop, use_drop, activation, exact_tanh, keep, order, bounds, fours
):
    """Every row read (``_read_rows``), rows split between threads, the first ``4 · fours[k]``
    of thread k's four at a time (``partition``). Returns all states (B, T, H) if ``keep``, else
    an empty (B, 0, H), and the last states (B, H)."""
    B, T, H = ids.shape[0], ids.shape[1], table.shape[1]
    states = np.empty((B, T if keep else 0, H), dtype=table.dtype)
    last = np.empty((B, H), dtype=table.dtype)
    W_hT = np.ascontiguousarray(W_h.T) if fours.sum() else W_h[:0, :0]
    options = (h0, start, drop, use_drop, activation, exact_tanh, keep, states, last, order)
    _read_blocks(
        compiled_alone(_read_four, (ids, table, W_hT, *options)),
        compiled_alone(_read_rows, (ids, table, W_h, *options)),
        ids, table, W_h, W_hT, h0, start, drop, use_drop, activation, exact_tanh, keep, order,
        bounds, fours, states, last,
    )  # fmt: skip
    return states, last


# The parallel loops hold nothing but the loop over threads' blocks: numba turns every array
# expression of a parallel function into a loop of its own and compiles each, which made the
# compiling of these two (a first run's slowest part) about twice as long. The functions they
# run come as addresses (``compiled_alone``: compiled once, not again inside the loop).
@njit(cache=True, parallel=True, nogil=True, error_model=ERRORS)
def _read_blocks(
    read_four, read_rows, ids, table, W_h, W_hT, h0, start, drop, use_drop, activation,
    exact_tanh, keep, order, bounds, fours, states, last,
):  # fmt: skip
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        grouped = 4 * fours[k]
        for first in range(0, grouped, 4):
            call_at(read_four, (
                ids, table, W_hT, h0, start, drop, use_drop, activation, exact_tanh, keep,
                states, last, rows[first : first + 4],
            ))  # fmt: skip
        call_at(read_rows, (
            ids, table, W_h, h0, start, drop, use_drop, activation, exact_tanh, keep, states,
            last, rows[grouped:],
        ))  # fmt: skip


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _backward_rows(
    ids, G, states, h0, W_hT, start, drop, use_drop, activation, grad_table, grad_W_h, grad_h0, rows
):
    T, H = ids.shape[1], W_hT.shape[0]
    dh = np.empty(H, dtype=G.dtype)
    delta = np.empty(H, dtype=G.dtype)
    previous = np.empty(H, dtype=G.dtype)
    for b in rows:
        dh[:] = 0.0
        for t in range(T - 1, start[b] - 1, -1):
            for i in range(H):
                dh[i] += G[b, t, i]
            times_derivative(dh, states[b, t], delta, activation)
            row = ids[b, t]
            for i in range(H):
                grad_table[row, i] += delta[i]
            copy_row(states[b, t - 1] if t > start[b] else h0[b], previous)
            if use_drop:  # (the step read h_{t-1} ⊙ drop)
                for j in range(H):
                    previous[j] *= drop[b, j]
            for i in range(H):
                d = delta[i]
                for j in range(H):
                    grad_W_h[i, j] += d * previous[j]
            dh[:] = 0.0
            dot_rows(W_hT, delta, dh)  # dh = W_hᵀ · delta
            if use_drop:
                for i in range(H):
                    dh[i] *= drop[b, i]
        for t in range(start[b]):  # steps that only carried h0
            for i in range(H):
                dh[i] += G[b, t, i]
        copy_row(dh, grad_h0[b])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model=ERRORS)
def _backward_four(
    ids, G, states, h0, W_h, start, drop, use_drop, activation, grad_table, grad_W_h, grad_h0, rows
):
    """``_backward_rows`` for four rows at once, from the last step down to the earliest of
    their starts: a row whose words have not started yet only gathers G (δ = 0 for it); the
    four rows' δ · W_h and outer products each in one pass (``products_of_four``,
    ``outer_products_of_four``)."""
    T, H = ids.shape[1], W_h.shape[0]
    dh = np.zeros((4, H), dtype=G.dtype)
    delta = np.empty((4, H), dtype=G.dtype)
    previous = np.empty((4, H), dtype=G.dtype)
    products = np.empty((4, H), dtype=G.dtype)
    first = T
    for r in range(4):
        first = min(first, start[rows[r]])
    for t in range(T - 1, first - 1, -1):
        for r in range(4):
            b = rows[r]
            for i in range(H):
                dh[r, i] += G[b, t, i]
            if t < start[b]:
                delta[r] = 0.0
                previous[r] = 0.0
                continue
            times_derivative(dh[r], states[b, t], delta[r], activation)
            word = ids[b, t]
            for i in range(H):
                grad_table[word, i] += delta[r, i]
            copy_row(states[b, t - 1] if t > start[b] else h0[b], previous[r])
            if use_drop:  # (the step read h_{t-1} ⊙ drop)
                for j in range(H):
                    previous[r, j] *= drop[b, j]
        outer_products_of_four(delta, previous, grad_W_h)
        products[:] = 0.0
        products_of_four(W_h, delta, products)  # δ · W_h = W_hᵀ · δ, per row
        for r in range(4):
            b = rows[r]
            if t >= start[b]:
                for i in range(H):
                    dh[r, i] = products[r, i] * drop[b, i] if use_drop else products[r, i]
    for r in range(4):
        b = rows[r]
        for t in range(first):  # steps that only carried h0
            for i in range(H):
                dh[r, i] += G[b, t, i]
        copy_row(dh[r], grad_h0[b])


def _backward(
    ids, G, states, h0, W_hT, start, drop, use_drop, activation, vocab_size, order, bounds, fours
):
    """The gradients of table (V, H), W_h (H, H) and h0 (B, H): each thread's block of rows
    into its own parts (``_backward_blocks``), the parts then summed in thread order."""
    B, H, threads = ids.shape[0], W_hT.shape[0], bounds.shape[0] - 1
    table_parts = np.zeros((threads, vocab_size, H), dtype=G.dtype)
    W_h_parts = np.zeros((threads, H, H), dtype=G.dtype)
    grad_h0 = np.empty((B, H), dtype=G.dtype)
    W_h = np.ascontiguousarray(W_hT.T) if fours.sum() else W_hT[:0, :0]
    inputs = (ids, G, states, h0)
    options = (start, drop, use_drop, activation, table_parts[0], W_h_parts[0], grad_h0, order)
    _backward_blocks(
        compiled_alone(_backward_four, (*inputs, W_h, *options)),
        compiled_alone(_backward_rows, (*inputs, W_hT, *options)),
        ids, G, states, h0, W_h, W_hT, start, drop, use_drop, activation, order, bounds, fours,
        table_parts, W_h_parts, grad_h0,
    )  # fmt: skip
    grad_table = table_parts[0].copy()
    grad_W_h = W_h_parts[0].copy()
    for k in range(1, threads):
        grad_table += table_parts[k]
        grad_W_h += W_h_parts[k]
    return grad_table, grad_W_h, grad_h0


@njit(cache=True, parallel=True, nogil=True, error_model=ERRORS)
def _backward_blocks(
    backward_four, backward_rows, ids, G, states, h0, W_h, W_hT, start, drop, use_drop,
    activation, order, bounds, fours, table_parts, W_h_parts, grad_h0,
):  # fmt: skip
    for k in prange(bounds.shape[0] - 1):  # one block of rows per thread
        rows = order[bounds[k] : bounds[k + 1]]
        grouped = 4 * fours[k]
        for first in range(0, grouped, 4):
            call_at(backward_four, (
                ids, G, states, h0, W_h, start, drop, use_drop, activation, table_parts[k],
                W_h_parts[k], grad_h0, rows[first : first + 4],
            ))  # fmt: skip
        call_at(backward_rows, (
            ids, G, states, h0, W_hT, start, drop, use_drop, activation, table_parts[k],
            W_h_parts[k], grad_h0, rows[grouped:],
        ))  # fmt: skip


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
        _, last = _read(
            *_kernel_arguments(ids, table, W_h, h0, start, None),
            ACTIVATION_CODES[activation],
            table.dtype != torch.float32,
            False,  # keep no states
            *_rows(ids, start),
        )
    return torch.from_numpy(last)


def _rows(ids: Tensor, start: Tensor) -> tuple[np.ndarray, ...]:
    """Rows per thread, balanced by the words each reads, in fours (``partition``)."""
    return partition(ids.shape[1] - start.numpy())


def _kernel_arguments(ids, table, W_h, h0, start, recurrent_mask) -> tuple:
    """(ids, table, W_h, h0, start, drop, use_drop) as the compiled kernels take them."""
    arrays = (_numpy(ids), _numpy(table), _numpy(W_h), _numpy(h0.to(table.dtype)), _numpy(start))
    return *arrays, *drop_arguments(recurrent_mask, table.dtype)


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class EmbeddedRNNFunction(torch.autograd.Function):
    """(ids, start, table, W_h, h0, activation, recurrent_mask) -> all states (B, T, H)."""

    @staticmethod
    def forward(ctx, ids, start, table, W_h, h0, activation, recurrent_mask):
        rows = _rows(ids, start)
        arguments = _kernel_arguments(ids, table, W_h, h0, start, recurrent_mask)
        exact_tanh = table.dtype != torch.float32
        states, _ = _read(*arguments, ACTIVATION_CODES[activation], exact_tanh, True, *rows)
        states = torch.from_numpy(states)
        ctx.save_for_backward(ids, start, W_h, h0, states)
        ctx.activation, ctx.vocab_size, ctx.partition = activation, table.shape[0], rows
        ctx.drop = arguments[-2:]
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
            *ctx.drop,
            ACTIVATION_CODES[ctx.activation],
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
            None,
        )


def embedded_rnn(
    ids: Tensor,
    start: Tensor,
    table: Tensor,
    W_h: Tensor,
    h0: Tensor,
    activation: str,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """All states (B, T, H) of the Simple RNN reading ``table[ids[b, start[b]:]]`` from ``h0``.

    ids: (B, T) int64; start: (B,) int64; table: (V, H) input projection per word;
    W_h: (H, H) recurrent weights; h0: (B, H); recurrent_mask: (B, H) or None, recurrent
    dropout's (each step reads h_{t-1} ⊙ mask). Differentiable in table, W_h and h0.
    """
    h0 = h0.to(table.dtype)
    return EmbeddedRNNFunction.apply(ids, start, table, W_h, h0, activation, recurrent_mask)


# The model-level path: padding shared, then the fused kernel -----------------------------------


def start_after_padding(
    ids: Tensor, padding_id: int, zero: Tensor, padding_states: Callable[[int], Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """Where each review's words begin (B,), the state there (B, H), and the shared states after
    1..longest padding steps (longest, H), computed once by ``padding_states(longest)``.
    ``zero`` (1, H) is the initial state."""
    is_word = ids != padding_id
    padding = torch.where(is_word.any(1), is_word.int().argmax(1), ids.shape[1])
    longest = int(padding.max())
    shared = padding_states(longest) if longest > 0 else zero[:0]
    h0 = torch.cat([zero, shared])[padding]
    return padding, h0, shared


def with_padding_states(states: Tensor, padding: Tensor, shared: Tensor) -> Tensor:
    """All states (B, T, H): the shared trajectory over each review's padding, then its own."""
    steps = states.shape[1]
    over_padding = torch.cat([shared, shared.new_zeros(steps - len(shared), shared.shape[1])])
    is_word = torch.arange(steps, device=states.device)[None, :] >= padding[:, None]
    return torch.where(is_word[..., None], states, over_padding)


def input_table(embedding: Tensor, A: Tensor, b: Tensor | None) -> Tensor:
    """``E · W_xᵀ + b`` (V, H): every word's input projection, with autograd."""
    return F.linear(embedding, A[:, A.shape[0] :], b)


def cached_input_table(embedding: Tensor, A: Tensor, b: Tensor | None, cache: dict) -> Tensor:
    """``input_table`` for inference, kept in ``cache`` (the layer's own dict) and recomputed
    only when a weight changed (an in-place update or a load bumps the version counters)."""
    weights = [embedding, A] + ([b] if b is not None else [])
    key = tuple((w.data_ptr(), w._version) for w in weights)
    if cache.get("key") != key:
        with torch.no_grad():
            cache["key"], cache["table"] = key, input_table(embedding, A, b)
    return cache["table"]


def fused_over_ids(
    ids: Tensor,
    embedding: Tensor,
    A: Tensor,
    b: Tensor | None,
    activation: str,
    padding_id: int,
    last_only: bool,
    cache: dict | None = None,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """The Simple RNN over ``embedding[ids]`` (ids (B, T), embedding (V, F), A (H, H + F)):
    the last state (B, H) if ``last_only``, else all states (B, T, H). Without gradients and
    with ``last_only``, no state is stored at all (inference). ``recurrent_mask`` (B, H):
    recurrent dropout's, on the words' steps (the shared padding is read undropped)."""
    H = A.shape[0]
    W_h = A[:, :H]
    zero = embedding.new_zeros(1, H)
    inference = last_only and not torch.is_grad_enabled() and recurrent_mask is None
    if inference:
        table = cached_input_table(embedding, A, b, {} if cache is None else cache)
    else:
        table = input_table(embedding, A, b)

    def padding_states(n: int) -> Tensor:
        # (The same kernel as the words', in inference too: a first run compiles one kernel.)
        only_padding = torch.full((1, n), padding_id, dtype=ids.dtype)
        start = torch.zeros(1, dtype=ids.dtype)
        return embedded_rnn(only_padding, start, table, W_h, zero, activation)[0]

    padding, h0, shared = start_after_padding(ids, padding_id, zero, padding_states)
    if inference:
        return last_state_from_ids(ids, table, W_h, h0, padding, activation)
    states = embedded_rnn(ids, padding, table, W_h, h0, activation, recurrent_mask)
    return states[:, -1] if last_only else with_padding_states(states, padding, shared)


# Words only: padding masked out (the state carries over it), either direction ------------------


def fused_over_words(
    ids: Tensor,
    start: Tensor,
    embedding: Tensor,
    A: Tensor,
    b: Tensor | None,
    activation: str,
    backwards: bool,
    last_only: bool,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """The Simple RNN over each row's words ``ids[b, start[b]:]`` from a zero state, the padding
    before them masked (the state carries): the last state (B, H) if ``last_only``, else all
    states (B, T, H), zeros over the padding. ``backwards`` reads the words last to first and
    lists the states in reading order, as ``SimpleRNN(go_backwards=True)`` with that mask does
    (the steps after the last word read carry its state)."""
    B, T = ids.shape
    H = A.shape[0]
    steps = torch.arange(T, device=ids.device)[None, :]
    if backwards:  # each row's words reversed in place: the kernel then reads them forwards
        ids = ids.gather(
            1, torch.where(steps >= start[:, None], start[:, None] + T - 1 - steps, steps)
        )
    zero = embedding.new_zeros(B, H)
    table = input_table(embedding, A, b)
    if last_only and not torch.is_grad_enabled() and recurrent_mask is None:
        return last_state_from_ids(ids, table, A[:, :H], zero, start, activation)
    states = embedded_rnn(ids, start, table, A[:, :H], zero, activation, recurrent_mask)
    if backwards:  # reading order: k-th word read at step k, then the last state carried
        states = states.gather(
            1, (start[:, None] + steps).clamp(max=T - 1)[..., None].expand(-1, -1, H)
        )
    return states[:, -1] if last_only else states
