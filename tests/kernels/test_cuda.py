"""On a CUDA machine: the cuDNN path (backend="auto") against the reference loop on the CPU.
Skipped where there is no GPU (CI has none); run on a lent GPU machine."""

import pytest
import torch

from elman.kernels import run_backend
from elman.kernels.reference import lengths_to_mask
from elman.models import ModelConfig, ReviewClassifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("padding", [None, "post", "pre"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cudnn_equals_reference(activation, padding, dtype, monkeypatch):
    # cuDNN multiplies float32 in TF32 by default (about 1e-3 relative); compare exact float32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 13, 5, generator=generator, dtype=dtype)
    A = torch.randn(7, 12, generator=generator, dtype=dtype) * 0.4
    b = torch.randn(7, generator=generator, dtype=dtype) * 0.4
    h0 = torch.randn(6, 7, generator=generator, dtype=dtype)
    mask = (
        None
        if padding is None
        else lengths_to_mask(torch.tensor([13, 1, 5, 9, 2, 13]), 13, padding)
    )
    results = []
    for device, backend in (("cpu", "reference"), ("cuda", "auto")):
        inputs = [t.to(device).requires_grad_() for t in (x, A, b, h0)]
        states = run_backend(
            backend, *inputs, None if mask is None else mask.to(device), activation
        )
        weights = torch.linspace(-1, 1, states.numel(), dtype=dtype, device=device)
        grads = torch.autograd.grad((states * weights.view_as(states)).sum(), inputs)
        results.append([t.cpu() for t in (states, *grads)])
    # float32: cuDNN sums in another order (seen: 3e-5 absolute on these gradients).
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, **tolerance)


def test_model_on_cuda_equals_cpu_reference():
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=100, max_len=40)).double()
    ids = torch.randint(1, 100, (8, 40))
    ids[2, :30] = 0
    model.rnn.backend = "reference"
    expected = model(ids, layer_by_layer=True)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.rnn.backend = "auto"
    model.cuda()
    logits = model(ids.cuda())
    logits.sum().backward()
    torch.testing.assert_close(logits.cpu(), expected)
    for p, want in zip(model.parameters(), expected_grads, strict=True):
        torch.testing.assert_close(p.grad.cpu(), want)


def test_bad_arguments_on_cuda_raise_before_any_kernel_as_nn_rnn_does():
    """The checks of the kernel boundary hold on CUDA too (no host read is needed for them),
    with nn.RNN's exception types; a tensor on another device is named."""
    from elman import RNN, SimpleRNN

    torch.manual_seed(0)
    theirs, ours = torch.nn.RNN(4, 5).cuda(), RNN(4, 5).cuda()
    x = torch.randn(6, 3, 4, device="cuda")
    for hx in (torch.randn(1, 2, 5, device="cuda"), torch.randn(2, 3, 5, device="cuda")):
        for model in (theirs, ours):
            with pytest.raises(RuntimeError, match="Expected hidden size"):
                model(x, hx)
    with pytest.raises(ValueError, match="h0 is on cpu"):
        SimpleRNN(4, 5).cuda()(x.transpose(0, 1), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="mask must have shape"):
        SimpleRNN(4, 5).cuda()(x.transpose(0, 1), mask=torch.ones(3, 5, dtype=torch.bool))
    ours.load_state_dict(theirs.state_dict())  # and the same numbers where all is well
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=2e-3, atol=2e-3)  # (TF32)
