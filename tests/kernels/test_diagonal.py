"""IndRNN's recurrence: the compiled loop equals the reference loop (states and every gradient,
masked or not), and the reference equals the formula written here, one unit at a time."""

import math

import pytest
import torch

from elman.kernels import run_diagonal
from elman.kernels.diagonal import diagonal_rnn
from elman.kernels.reference import reference_diagonal


def _inputs(dtype, masked: bool):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 30, 7, generator=generator, dtype=dtype)
    u = torch.rand(7, generator=generator, dtype=dtype) * 1.2
    h0 = torch.randn(5, 7, generator=generator, dtype=dtype)
    mask = torch.rand(5, 30, generator=generator) > 0.3 if masked else None
    return [t.requires_grad_() for t in (z, u, h0)], mask


def test_the_reference_is_the_formula_unit_by_unit():
    (z, u, h0), mask = _inputs(torch.float64, masked=True)
    states = reference_diagonal(z, u, h0, mask, "tanh").detach()
    z, u, h0 = z.tolist(), u.tolist(), h0.tolist()
    for row in range(5):
        for unit in range(7):
            h = h0[row][unit]
            for t in range(30):
                if mask[row, t]:
                    h = math.tanh(z[row][t][unit] + u[unit] * h)
                assert states[row, t, unit].item() == pytest.approx(h, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("masked", [False, True])
def test_the_compiled_loop_equals_the_reference(dtype, activation, masked):
    (z, u, h0), mask = _inputs(dtype, masked)
    fast = diagonal_rnn(z, u, h0, mask, activation)
    slow = reference_diagonal(z, u, h0, mask, activation)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(fast, slow, **tolerance)
    grad = torch.randn_like(fast)
    for a, b in zip(
        torch.autograd.grad(fast, (z, u, h0), grad),
        torch.autograd.grad(slow, (z, u, h0), grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b, **tolerance)


def test_gradcheck_and_the_dispatch():
    (z, u, h0), mask = _inputs(torch.float64, masked=True)
    small = (z[:2, :6, :3].detach().requires_grad_(), u[:3].detach().requires_grad_())
    h = h0[:2, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, c: diagonal_rnn(a, b, c, mask[:2, :6], "tanh"), (*small, h)
    )
    for backend in ("auto", "fused", "reference", "torch"):
        torch.testing.assert_close(
            run_diagonal(backend, z, u, h0, mask, "relu"),
            reference_diagonal(z, u, h0, mask, "relu"),
        )
