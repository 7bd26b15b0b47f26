"""The IndRNN layer: h_t = act(W x_t + u ⊙ h_{t-1} + b), as written in the test, in a model."""

import torch

from elman.cells.indrnn import IndRNN
from elman.config import SequenceConfig
from elman.models import SequenceModel


def test_the_layer_is_the_formula():
    torch.manual_seed(0)
    layer = IndRNN(3, 4, activation="relu", return_sequences=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    h, expected = torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(9):
        h = torch.relu(x[:, t] @ layer.W.T + layer.b + layer.u * h)
        expected.append(h)
    torch.testing.assert_close(layer(x), torch.stack(expected, 1))
    lengths = torch.tensor([9, 4])
    last = IndRNN(3, 4, activation="relu").double()
    last.load_state_dict(layer.state_dict())
    torch.testing.assert_close(last(x, lengths=lengths)[1], layer(x)[1, 3])


def test_its_recurrent_weights_start_in_0_1_and_it_trains_in_a_model():
    torch.manual_seed(0)
    layer = IndRNN(2, 64)
    assert 0 <= float(layer.u.min()) and float(layer.u.max()) <= 1
    model = SequenceModel(SequenceConfig("indrnn", input_size=2, activation="relu"), classes=2)
    x, y = torch.randn(16, 12, 2), torch.randint(0, 2, (16,)).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    assert model.rnn.u.grad is not None and model.rnn.u.grad.abs().sum() > 0
