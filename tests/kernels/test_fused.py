"""The fused kernel and the torch/cuDNN mapping against the reference loop."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elman import SimpleRNN
from elman.kernels import run_backend
from elman.kernels.reference import lengths_to_mask

FAST_BACKENDS = ["fused", "torch"]


def _run_all(backend, x, A, b, h0, mask, activation):
    """States and the gradients of a random projection of them w.r.t. every input."""
    states = run_backend(backend, x, A, b, h0, mask, activation)
    weights = torch.linspace(-1, 1, states.numel(), dtype=states.dtype).reshape(states.shape)
    inputs = [t for t in (x, A, b, h0) if t is not None]
    grads = torch.autograd.grad((states * weights).sum(), inputs)
    return (states, *grads)


def _inputs(batch, steps, features, hidden, dtype, bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, dtype=dtype) * scale).requires_grad_()

    x = rand(batch, steps, features)
    A = rand(hidden, hidden + features, scale=0.5)
    b = rand(hidden, scale=0.5) if bias else None
    h0 = rand(batch, hidden)
    return x, A, b, h0


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("padding", [None, "post", "pre", "holes"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_backends_equal_reference(backend, activation, padding, dtype):
    x, A, b, h0 = _inputs(5, 11, 3, 4, dtype)
    lengths = torch.tensor([11, 4, 1, 7, 9])
    if padding == "holes":
        mask = torch.rand(5, 11, generator=torch.Generator().manual_seed(1)) > 0.3
    else:
        mask = None if padding is None else lengths_to_mask(lengths, 11, padding)
    expected = _run_all("reference", x, A, b, h0, mask, activation)
    actual = _run_all(backend, x, A, b, h0, mask, activation)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, **tolerance)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("dropped", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_four_rows_at_a_time_equal_reference_on_any_thread_count(
    activation, dropped, dtype, masked
):
    """Without a mask, rows 0-3 and 4-7 run four at a time, rows 8-10 one by one: on 1 thread
    (4 + 4 + 3) and on 2 (rows 0-3; rows 4-7 + 3), the same bits; with a mask (holes, a row
    that reads nothing, one that reads every step) the groups follow the steps read. States
    and every gradient, recurrent dropout or not, against the reference."""
    x, A, b, h0 = _inputs(11, 9, 3, 6, dtype, seed=3)
    generator = torch.Generator().manual_seed(4)
    drop = (torch.rand(11, 6, generator=generator) > 0.3).to(dtype) / 0.7 if dropped else None
    mask = None
    if masked:
        mask = torch.rand(11, 9, generator=generator) > 0.4
        mask[0], mask[5] = False, True

    def run_all(backend):
        states = run_backend(backend, x, A, b, h0, mask, activation, drop)
        weights = torch.linspace(-1, 1, states.numel(), dtype=dtype).reshape(states.shape)
        return (states, *torch.autograd.grad((states * weights).sum(), (x, A, b, h0)))

    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(run_all("fused"))
    finally:
        torch.set_num_threads(before)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    for one, two, want in zip(*results, run_all("reference"), strict=True):
        assert torch.equal(one, two)
        torch.testing.assert_close(one, want, **tolerance)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_without_bias(backend):
    x, A, _, h0 = _inputs(2, 6, 3, 5, torch.float64, bias=False)
    for got, want in zip(
        _run_all(backend, x, A, None, h0, None, "tanh"),
        _run_all("reference", x, A, None, h0, None, "tanh"),
        strict=True,
    ):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fused_gradcheck_float64(activation):
    x, A, b, h0 = _inputs(3, 5, 2, 4, torch.float64, seed=2)
    mask = lengths_to_mask(torch.tensor([5, 2, 4]), 5, "pre")

    def run(x, A, b, h0):
        return run_backend("fused", x, A, b, h0, mask, activation)

    assert torch.autograd.gradcheck(run, (x, A, b, h0))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 6),
    steps=st.integers(1, 12),
    features=st.integers(1, 5),
    hidden=st.integers(1, 9),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 10_000),
)
def test_fused_equals_reference_on_random_shapes(batch, steps, features, hidden, activation, seed):
    x, A, b, h0 = _inputs(batch, steps, features, hidden, torch.float64, seed=seed)
    lengths = torch.randint(0, steps + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    mask = lengths_to_mask(lengths, steps, "pre")
    for got, want in zip(
        _run_all("fused", x, A, b, h0, mask, activation),
        _run_all("reference", x, A, b, h0, mask, activation),
        strict=True,
    ):
        torch.testing.assert_close(got, want)


def test_layer_backends_agree_in_every_return_mode():
    torch.manual_seed(0)
    x = torch.randn(4, 7, 3)
    reference = SimpleRNN(3, 5, return_sequences=True, return_state=True, backend="reference")
    fused = SimpleRNN(3, 5, return_sequences=True, return_state=True, backend="fused")
    fused.load_state_dict(reference.state_dict())
    for got, want in zip(fused(x), reference(x), strict=True):
        torch.testing.assert_close(got, want)
    assert SimpleRNN(3, 5).backend == "auto"


def test_fused_inference_keeps_no_graph():
    layer = SimpleRNN(3, 4, backend="fused")
    with torch.no_grad():
        out = layer(torch.randn(2, 5, 3))
    assert out.grad_fn is None and not out.requires_grad


def test_fused_is_deterministic_and_thread_count_free():
    x, A, b, h0 = _inputs(8, 40, 3, 6, torch.float32)
    first = _run_all("fused", x, A, b, h0, None, "tanh")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _run_all("fused", x, A, b, h0, None, "tanh")
    finally:
        torch.set_num_threads(threads)
    # The recurrence itself splits rows, never sums, so its states do not depend on threads.
    assert torch.equal(first[0], single[0])
    again = _run_all("fused", x, A, b, h0, None, "tanh")
    for got, want in zip(again, first, strict=True):
        assert torch.equal(got, want)


def test_fast_float32_tanh_is_accurate():
    from elman.kernels.fused import recurrence

    P = torch.linspace(-20, 20, 400_001).reshape(1, -1, 1)
    states = recurrence(P, torch.zeros(1, 1), torch.zeros(1, 1), None, "tanh")
    exact = torch.tanh(P.double())
    relative = ((states.double() - exact).abs() / exact.abs().clamp_min(1e-30)).max()
    assert relative < 5e-7


def test_fast_tanh_propagates_nan_and_infinity():
    from elman.kernels.fused import recurrence

    P = torch.tensor([[[float("nan")], [0.5]], [[float("inf")], [-float("inf")]]])
    states = recurrence(P, torch.zeros(1, 1), torch.zeros(2, 1), None, "tanh")
    assert torch.isnan(states[0, 0]).all() and torch.isnan(states[0, 1]).all()
    assert states[1, 0].item() == 1.0 and states[1, 1].item() == -1.0


@pytest.mark.parametrize("padding", [None, "holes"])
def test_recurrence_in_the_projections_memory_gives_the_same_states(padding):
    """``overwrite`` writes each state over its row of P (read first): the same states, P's
    memory reused, and without it the caller's P is left as it was."""
    from elman.kernels.fused import recurrence

    generator = torch.Generator().manual_seed(3)
    P = torch.randn(9, 30, 16, generator=generator)
    W_h = torch.randn(16, 16, generator=generator) * 0.3
    h0 = torch.randn(9, 16, generator=generator)
    mask = None if padding is None else torch.rand(9, 30, generator=generator) > 0.3
    kept = P.clone()
    apart = recurrence(P, W_h, h0, mask, "tanh")
    assert torch.equal(P, kept) and apart.data_ptr() != P.data_ptr()
    in_place = recurrence(P, W_h, h0, mask, "tanh", overwrite=True)
    assert in_place.data_ptr() == P.data_ptr() and torch.equal(in_place, apart)
    torch.testing.assert_close(apart, reference_states(kept, W_h, h0, mask), rtol=0, atol=2e-6)


def reference_states(P, W_h, h0, mask):
    """The recurrence written out in torch: a masked step keeps the state."""
    h, states = h0, []
    for t in range(P.shape[1]):
        new = torch.tanh(P[:, t] + h @ W_h.T)
        h = new if mask is None else torch.where(mask[:, t, None], new, h)
        states.append(h)
    return torch.stack(states, 1)
