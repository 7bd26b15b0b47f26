"""The per-step matrix-product kernel (wide shapes) against the reference loop, and the switch."""

import pytest
import torch
from torch import nn

import elman
from elman.kernels import per_step_products, run_backend
from elman.kernels.reference import reference_rnn
from elman.kernels.stepwise import stepwise_rnn


def _inputs(batch, steps, features, hidden, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(batch, steps, features, dtype=dtype, requires_grad=True)
    A = (torch.randn(hidden, hidden + features, dtype=dtype) * 0.4).requires_grad_()
    b = torch.randn(hidden, dtype=dtype, requires_grad=True)
    h0 = torch.randn(batch, hidden, dtype=dtype, requires_grad=True)
    return x, A, b, h0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dropped", [False, True])
def test_stepwise_equals_reference_with_gradients(activation, masked, dropped):
    x, A, b, h0 = _inputs(5, 12, 3, 6)
    mask = torch.rand(5, 12) > 0.3 if masked else None
    drop = torch.bernoulli(torch.full((5, 6), 0.5, dtype=torch.float64)) * 2 if dropped else None
    weights = torch.linspace(-1, 1, 6, dtype=torch.float64)
    results = []
    for run in (reference_rnn, stepwise_rnn):
        for t in (x, A, b, h0):
            t.grad = None
        states = run(x, A, b, h0, mask, activation, drop)
        (states * weights).sum().backward()
        results.append([states.detach(), x.grad, A.grad, b.grad, h0.grad])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # the inference path keeps no graph and gives the same states
        torch.testing.assert_close(stepwise_rnn(x, A, b, h0, mask, activation, drop), results[0][0])


def test_stepwise_gradcheck():
    x, A, b, h0 = _inputs(3, 6, 2, 4)
    mask = torch.rand(3, 6) > 0.3
    drop = torch.bernoulli(torch.full((3, 4), 0.5, dtype=torch.float64)) * 2

    def run(x, A, b, h0):
        return stepwise_rnn(x, A, b, h0, mask, "tanh", drop)

    assert torch.autograd.gradcheck(run, (x, A, b, h0))


def test_wide_shapes_switch_to_per_step_products_and_still_equal_nn_rnn():
    assert per_step_products(256, 128) and per_step_products(128, 256)
    assert not per_step_products(32, 32) and not per_step_products(256, 64)
    assert per_step_products(16, 512) and not per_step_products(8, 512)
    assert not per_step_products(64, 256) and not per_step_products(128, 128)
    torch.manual_seed(1)
    theirs = nn.RNN(128, 128, batch_first=True).double()
    ours = elman.RNN(128, 128, batch_first=True).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(256, 20, 128, dtype=torch.float64, requires_grad=True)
    outputs = []
    for layer in (theirs, ours):
        x.grad = None
        output, h_n = layer(x)
        (output.sin().sum() + h_n.sum()).backward()
        outputs.append((output.detach(), h_n.detach(), x.grad))
    for got, want in zip(*outputs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the dispatch routes this shape to the stepwise kernel: the very same bits
    x, A, b, h0 = _inputs(256, 5, 3, 128, dtype=torch.float32)
    assert torch.equal(
        run_backend("fused", x, A, b, h0, None, "tanh"), stepwise_rnn(x, A, b, h0, None, "tanh")
    )


@pytest.mark.parametrize("masked", [False, True])
def test_float32_stays_within_rounding_of_the_exact_states_and_gradients(masked):
    """float32 runs the compiled rational tanh (``loops.tanh_float32``) and its own products:
    states and gradients stay within float32 rounding of the float64 reference."""
    x, A, b, h0 = _inputs(32, 40, 16, 128)
    with torch.no_grad():  # weights of a trainable size: a chaotic net would amplify rounding
        A /= 0.4 * 12
    mask = torch.rand(32, 40) > 0.2 if masked else None
    weights = torch.randn(32, 40, 128, dtype=torch.float64)
    results = []
    for run, dtype in ((reference_rnn, torch.float64), (stepwise_rnn, torch.float32)):
        inputs = [t.detach().to(dtype).requires_grad_() for t in (x, A, b, h0)]
        states = run(*inputs, mask, "tanh")
        (states * weights.to(dtype)).sum().backward()
        results.append([states.detach()] + [t.grad for t in inputs])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["fused", "stepwise"])
@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (3, 1), (1, 5), (4, 3)])
def test_edge_shapes_and_strided_input_equal_the_reference(kernel, batch, steps):
    """One step or one row (the edges of the weight gradient's shifted rows), the input a
    time-major buffer seen batch first (strided unless B or T is 1), h0 trained too."""
    from elman.kernels.fused import fused_rnn

    run_kernel = {"fused": fused_rnn, "stepwise": stepwise_rnn}[kernel]
    x, A, b, h0 = _inputs(batch, steps, 3, 4)
    x = x.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    results = []
    for run in (reference_rnn, run_kernel):
        states = run(x, A, b, h0, None, "tanh")
        grads = torch.autograd.grad((states * states.detach().sin()).sum(), (x, A, b, h0))
        results.append([states, *grads])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)
