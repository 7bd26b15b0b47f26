import math

import numpy as np
import pytest
import torch

from elman import SimpleRNN
from elman.kernels.reference import lengths_to_mask


def numpy_elman(x, A, b, h0, activation="tanh"):
    """The textbook formula, written independently of the layer: h_t = act(A [h_{t-1}; x_t] + b)."""
    act = np.tanh if activation == "tanh" else (lambda v: np.maximum(v, 0))
    h = h0
    states = []
    for t in range(x.shape[1]):
        h = act(np.concatenate([h, x[:, t]], axis=1) @ A.T + b)
        states.append(h)
    return np.stack(states, axis=1)


@pytest.mark.parametrize("input_size,hidden_size", [(32, 32), (1, 1), (10, 3), (3, 10), (128, 64)])
def test_parameter_count_is_h_times_h_plus_x_plus_h(input_size, hidden_size):
    layer = SimpleRNN(input_size, hidden_size)
    assert (
        sum(p.numel() for p in layer.parameters())
        == hidden_size * (hidden_size + input_size) + hidden_size
    )
    assert layer.A.shape == (hidden_size, hidden_size + input_size)
    no_bias = SimpleRNN(input_size, hidden_size, bias=False)
    assert sum(p.numel() for p in no_bias.parameters()) == hidden_size * (hidden_size + input_size)
    assert len(list(layer.parameters())) == 2


def test_reference_shape_has_2080_parameters():
    assert sum(p.numel() for p in SimpleRNN(32, 32).parameters()) == 2080


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_layer_equals_written_formula(activation):
    torch.manual_seed(1)
    layer = SimpleRNN(5, 7, activation=activation, return_sequences=True).double()
    with torch.no_grad():
        layer.b.uniform_(-0.5, 0.5)
    x = torch.randn(4, 9, 5, dtype=torch.float64)
    h0 = torch.randn(4, 7, dtype=torch.float64)
    expected = numpy_elman(
        x.numpy(), layer.A.detach().numpy(), layer.b.detach().numpy(), h0.numpy(), activation
    )
    np.testing.assert_allclose(layer(x, h0).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_return_modes_and_zero_initial_state():
    torch.manual_seed(2)
    x = torch.randn(3, 6, 4)
    seq_layer = SimpleRNN(4, 5, return_sequences=True, return_state=True)
    states, last = seq_layer(x)
    assert states.shape == (3, 6, 5) and last.shape == (3, 5)
    torch.testing.assert_close(states[:, -1], last)
    last_layer = SimpleRNN(4, 5)
    last_layer.load_state_dict(seq_layer.state_dict())
    torch.testing.assert_close(last_layer(x), last)
    torch.testing.assert_close(last_layer(x, torch.zeros(3, 5)), last)
    assert not torch.allclose(last_layer(x, torch.ones(3, 5)), last)


def test_gradcheck_float64():
    torch.manual_seed(3)
    layer = SimpleRNN(3, 4, return_sequences=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def run(x, h0, A, b):
        return torch.func.functional_call(layer, {"A": A, "b": b}, (x, h0))

    A = layer.A.detach().clone().requires_grad_()
    b = layer.b.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(run, (x, h0, A, b))


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_padding_is_ignored_with_lengths_or_mask(padding):
    torch.manual_seed(4)
    layer = SimpleRNN(3, 4)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    mask = lengths_to_mask(lengths, 6, padding)
    garbage = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    with_mask = layer(garbage, mask=mask)
    for row, n in enumerate(lengths.tolist()):
        valid = x[row : row + 1, :n] if padding == "post" else x[row : row + 1, 6 - n :]
        torch.testing.assert_close(with_mask[row : row + 1], layer(valid))
    if padding == "post":
        torch.testing.assert_close(layer(garbage, lengths=lengths), with_mask)


def test_masked_steps_carry_the_state_in_sequences():
    layer = SimpleRNN(2, 3, return_sequences=True)
    x = torch.randn(1, 4, 2)
    states = layer(x, lengths=torch.tensor([2]))
    torch.testing.assert_close(states[0, 2], states[0, 1])
    torch.testing.assert_close(states[0, 3], states[0, 1])


def test_keras_initialisation():
    torch.manual_seed(5)
    layer = SimpleRNN(48, 32)
    recurrent, inputs = layer.A[:, :32].detach(), layer.A[:, 32:].detach()
    torch.testing.assert_close(recurrent @ recurrent.T, torch.eye(32), atol=1e-5, rtol=0)
    limit = math.sqrt(6 / (48 + 32))
    assert inputs.abs().max() <= limit
    assert inputs.abs().max() > 0.9 * limit  # uniform over the whole range, not a narrow one
    assert torch.count_nonzero(layer.b) == 0


def test_the_other_initialisations():
    torch.manual_seed(0)
    identity = SimpleRNN(5, 6, activation="relu", init="identity")  # Le et al.'s IRNN
    torch.testing.assert_close(identity.A[:, :6].detach(), torch.eye(6), atol=0, rtol=0)
    assert identity.A[:, 6:].abs().max() <= math.sqrt(6 / 11) and not identity.b.any()
    orthogonal = SimpleRNN(6, 6, init="orthogonal").A.detach()
    for block in (orthogonal[:, :6], orthogonal[:, 6:]):
        torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)
    like_torch = SimpleRNN(5, 16, init="torch")
    for weights in (like_torch.A, like_torch.b):
        assert weights.abs().max() <= 1 / 4 and weights.abs().max() > 0.2  # U(±1/sqrt(16))
    torch.manual_seed(3)  # the default draws what it always drew: Keras'
    keras = SimpleRNN(5, 6).A.detach()
    torch.manual_seed(3)
    torch.testing.assert_close(SimpleRNN(5, 6, init="keras").A.detach(), keras, atol=0, rtol=0)
    with pytest.raises(ValueError, match="init must be one of"):
        SimpleRNN(5, 6, init="zeros")


def test_init_is_a_setting_of_every_model_that_has_an_a():
    from elman.config import SequenceConfig
    from elman.errors import UserError
    from elman.models import SequenceModel

    model = SequenceModel(SequenceConfig(input_size=2, init="identity", activation="relu"), 2)
    torch.testing.assert_close(model.rnn.A[:, :32].detach(), torch.eye(32), atol=0, rtol=0)
    with pytest.raises(UserError, match="`init` identity starts a simple RNN's matrix A"):
        SequenceConfig("lstm", init="identity")


def test_bad_input_shape_and_options():
    layer = SimpleRNN(3, 4)
    with pytest.raises(ValueError, match=r"\(batch, time, 3\)"):
        layer(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="activation"):
        SimpleRNN(3, 4, activation="sigmoid")
    with pytest.raises(ValueError, match="positive"):
        SimpleRNN(0, 4)
