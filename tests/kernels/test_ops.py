"""The compiled CPU layer as PyTorch operators (``elman.kernels.ops``): ``torch.export``,
``torch.compile(fullgraph=True)`` and fake tensors run the layer, and agree with eager calls,
values and gradients, as they do for nn.RNN."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from elman import RNN, SimpleRNN
from elman.models import ModelConfig, ReviewClassifier


def _model(**settings) -> RNN:
    torch.manual_seed(0)
    return RNN(4, 8, batch_first=True, **settings)


@pytest.mark.parametrize("settings", [{}, {"num_layers": 2, "bidirectional": True}])
def test_torch_export_gives_the_eager_numbers(settings):
    model = _model(**settings)
    x = torch.randn(3, 7, 4)
    exported = torch.export.export(model, (x,))
    assert "torch.ops.elman.rnn_states" in exported.graph_module.code
    for got, want in zip(exported.module()(x), model(x), strict=True):
        torch.testing.assert_close(got, want)
    other = torch.randn(3, 7, 4)  # the graph is not these inputs' values
    torch.testing.assert_close(exported.module()(other)[0], model(other)[0])


def test_torch_compile_fullgraph_gives_the_eager_values_and_gradients():
    model = _model(num_layers=2)
    compiled = torch.compile(model, fullgraph=True)
    results = []
    for run in (compiled, model):
        model.zero_grad()
        x = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
        h0 = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
        output, h_n = run(x, h0)
        (output.square().sum() + h_n.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append([output, h_n, x.grad, h0.grad, *grads])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_nn_rnn_is_held_to_the_same_standard():
    """The peer does what the test above asks of elman (so the test asks no more than nn.RNN)."""
    torch.manual_seed(0)
    theirs = nn.RNN(4, 8, batch_first=True)
    x = torch.randn(3, 7, 4)
    torch.testing.assert_close(torch.export.export(theirs, (x,)).module()(x)[0], theirs(x)[0])


def test_fake_and_meta_tensors_give_shapes_without_running_a_kernel():
    model = _model(bidirectional=True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        output, h_n = model(torch.randn(3, 7, 4))
    assert output.shape == (3, 7, 16) and h_n.shape == (2, 3, 8)
    layer = SimpleRNN(4, 8, return_sequences=True).to("meta")
    assert layer(torch.randn(3, 7, 4, device="meta")).shape == (3, 7, 8)


def test_the_review_classifier_compiles_over_token_ids():
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=50, max_len=12, hidden_size=6)).eval()
    ids = torch.randint(1, 50, (4, 12))
    ids[:, :5] = 0  # padding in front
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(ids), model(ids))
