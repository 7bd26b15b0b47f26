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
def test_gradcheck_float64(activation):
    ids, start, table, W_h, h0 = _case(3, 6, 5, 4, seed=1)
    assert torch.autograd.gradcheck(
        lambda table, W_h, h0: embedded_rnn(ids, start, table, W_h, h0, activation),
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
