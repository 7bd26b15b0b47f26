"""The fused embedding + RNN kernel over token ids against the reference loop."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elman.kernels.ids import embedded_rnn
from elman.kernels.reference import reference_rnn


def _reference(ids, start, table, W_h, h0, activation):
    """The same function from the reference loop: input = table rows, steps before start masked."""
    H = W_h.shape[0]
    A = torch.cat([W_h, torch.eye(H, dtype=table.dtype)], dim=1)  # x_t is the projection itself
    mask = torch.arange(ids.shape[1])[None, :] >= start[:, None]
    return reference_rnn(table[ids], A, None, h0, mask, activation)


def _case(batch, steps, vocab, hidden, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, steps), generator=generator)
    start = torch.randint(0, steps + 1, (batch,), generator=generator)
    table = (torch.randn(vocab, hidden, generator=generator, dtype=dtype) * 0.5).requires_grad_()
    W_h = (torch.randn(hidden, hidden, generator=generator, dtype=dtype) * 0.4).requires_grad_()
    h0 = torch.randn(batch, hidden, generator=generator, dtype=dtype).requires_grad_()
    return ids, start, table, W_h, h0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("dropped", [False, True])
def test_gradcheck_float64(activation, dropped):
    ids, start, table, W_h, h0 = _case(4, 6, 5, 4, seed=1)
    start[0], start[-1] = 0, 6  # a row that reads from the first step, one that never reads
    drop = torch.bernoulli(torch.full((4, 4), 0.5, dtype=torch.float64)) * 2 if dropped else None
    assert torch.autograd.gradcheck(
        lambda table, W_h, h0: embedded_rnn(ids, start, table, W_h, h0, activation, drop),
        (table, W_h, h0),
    )


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 7),
    steps=st.integers(1, 15),
    vocab=st.integers(1, 9),
    hidden=st.integers(1, 8),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 10_000),
)
def test_equals_reference_on_random_shapes(batch, steps, vocab, hidden, activation, seed):
    ids, start, table, W_h, h0 = _case(batch, steps, vocab, hidden, seed)
    weights = torch.randn(
        batch, steps, hidden, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    results = []
    for run in (embedded_rnn, _reference):
        states = run(ids, start, table, W_h, h0, activation)
        results.append([states, *torch.autograd.grad((states * weights).sum(), (table, W_h, h0))])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_words_only_equals_the_masked_layer_with_gradients(backwards, sequences, recurrent_dropout):
    from elman import SimpleRNN
    from elman.kernels import words_start

    torch.manual_seed(3)
    ids = torch.randint(1, 30, (6, 11))
    for row, padding in enumerate([0, 2, 5, 10, 11, 7]):
        ids[row, :padding] = 0
    embedding = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    layer = SimpleRNN(
        4,
        5,
        return_sequences=sequences,
        go_backwards=backwards,
        recurrent_dropout=recurrent_dropout,
    ).double()
    assert words_start("fused", ids, 0) is not None  # the kernel's case: padding in front
    weights = torch.linspace(-1, 1, 5, dtype=torch.float64)
    results = []
    for words_only in (True, False):
        for t in (embedding, layer.A, layer.b):
            t.grad = None
        torch.manual_seed(9)
        if words_only:
            out = layer.from_ids(ids, embedding, 0, words_only=True)
        else:  # the layer itself, the padding masked
            out = layer(torch.nn.functional.embedding(ids, embedding), mask=ids != 0)
        (out * weights).sum().backward()
        results.append([out.detach(), embedding.grad, layer.A.grad, layer.b.grad])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)
    layer.eval()
    with torch.no_grad():  # inference: the last state straight from the kernel
        torch.testing.assert_close(
            layer.from_ids(ids, embedding, 0, words_only=True),
            layer(torch.nn.functional.embedding(ids, embedding), mask=ids != 0),
        )


def test_words_only_falls_back_to_the_mask_when_padding_is_not_in_front():
    from elman import SimpleRNN
    from elman.kernels import words_start

    ids = torch.tensor([[5, 6, 7, 0, 0], [0, 0, 8, 9, 4]])  # the first row is padded at its end
    assert words_start("fused", ids, 0) is None
    assert words_start("reference", ids[1:], 0) is None  # only the fused kernel reads words
    embedding = torch.randn(10, 3)
    layer = SimpleRNN(3, 4, go_backwards=True)
    torch.testing.assert_close(
        layer.from_ids(ids, embedding, 0, words_only=True),
        layer(torch.nn.functional.embedding(ids, embedding), mask=ids != 0),
    )


@pytest.mark.parametrize("dropped", [False, True])
def test_four_rows_at_a_time_on_any_thread_count(dropped):
    """11 rows grouped in fours by how many words they read: rows starting at steps 0-3 read
    together (each keeps h0 until its own start), then 4-7; the rows starting at 8 and 9 (never
    reading) alone. States and gradients equal the reference on 1 and 2 threads, and states and
    ∂h0 (per row) are the same bits on both."""
    ids, _, table, W_h, h0 = _case(11, 9, 7, 5, seed=5)
    start = torch.tensor([0, 9, 3, 1, 2, 5, 4, 7, 9, 6, 8])
    drop = torch.bernoulli(torch.full((11, 5), 0.5, dtype=torch.float64)) * 2 if dropped else None
    weights = torch.randn(11, 9, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def run_all(run, *extra):
        states = run(ids, start, table, W_h, h0, "tanh", *extra)
        return [states, *torch.autograd.grad((states * weights).sum(), (table, W_h, h0))]

    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(run_all(embedded_rnn, drop))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][3], results[1][3])
    if drop is None:
        for got, want in zip(results[1], run_all(_reference), strict=True):
            torch.testing.assert_close(got, want)
