"""elman.RNN against torch.nn.RNN with the same weights: outputs, final states and gradients."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import elman
from elman.rnn import RNN, SimpleRNN, Stacked

GRID = list(
    itertools.product(
        [1, 2, 3],  # layers
        [False, True],  # bidirectional
        [False, True],  # batch_first
        [False, True],  # h0 given
        ["tanh", "relu"],
    )
)


def _pair(layers, bidirectional, batch_first, nonlinearity, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    theirs = nn.RNN(
        3, 5, layers, nonlinearity, batch_first=batch_first, bidirectional=bidirectional
    ).to(dtype)
    ours = RNN(3, 5, layers, nonlinearity, batch_first=batch_first, bidirectional=bidirectional)
    ours.to(dtype).load_state_dict(theirs.state_dict())
    return ours, theirs


def _gradients_equal(ours: RNN, theirs: nn.RNN, **tolerance) -> None:
    H = ours.hidden_size
    for name, _ in ours._cells():
        A, b = ours.cell(name).A, ours.cell(name).b
        torch.testing.assert_close(
            A.grad[:, :H], getattr(theirs, f"weight_hh_{name}").grad, **tolerance
        )
        torch.testing.assert_close(
            A.grad[:, H:], getattr(theirs, f"weight_ih_{name}").grad, **tolerance
        )
        torch.testing.assert_close(b.grad, getattr(theirs, f"bias_ih_{name}").grad, **tolerance)
        torch.testing.assert_close(b.grad, getattr(theirs, f"bias_hh_{name}").grad, **tolerance)


@pytest.mark.parametrize("layers,bidirectional,batch_first,given_h0,nonlinearity", GRID)
def test_padded_input_equals_nn_rnn(layers, bidirectional, batch_first, given_h0, nonlinearity):
    ours, theirs = _pair(layers, bidirectional, batch_first, nonlinearity)
    shape = (4, 7, 3) if batch_first else (7, 4, 3)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    directions = 2 if bidirectional else 1
    h0 = torch.randn(layers * directions, 4, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for model in (ours, theirs):
        x.grad = h0.grad = None
        output, h_n = model(x, h0 if given_h0 else None)
        (output.square().sum() + h_n.sum()).backward()
        results.append((output, h_n, x.grad.clone(), None if h0.grad is None else h0.grad.clone()))
    for got, want in zip(results[0], results[1], strict=True):
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    _gradients_equal(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True), (3, True)])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_input_equals_nn_rnn(layers, bidirectional, enforce_sorted):
    ours, theirs = _pair(layers, bidirectional, True, "tanh")
    lengths = torch.tensor([7, 5, 5, 2, 1]) if enforce_sorted else torch.tensor([2, 7, 5, 1, 5])
    x = torch.randn(5, 7, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for model in (ours, theirs):
        x.grad = None
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
        output, h_n = model(packed)
        assert torch.equal(output.batch_sizes, packed.batch_sizes)
        padded, _ = pad_packed_sequence(output, batch_first=True)
        (padded.square().sum() + h_n.sum()).backward()
        results.append((output.data, padded, h_n, x.grad.clone()))
    for got, want in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    _gradients_equal(ours, theirs, rtol=1e-10, atol=1e-10)


def test_float32_unbatched_and_the_same_start_as_nn_rnn():
    torch.manual_seed(3)
    theirs = nn.RNN(4, 6, 2)
    torch.manual_seed(3)
    ours = elman.RNN(4, 6, 2)  # same draws in the same order: the same function
    x = torch.randn(9, 4)  # unbatched (T, F)
    (out_ours, h_ours), (out_theirs, h_theirs) = ours(x), theirs(x)
    assert out_ours.shape == out_theirs.shape == (9, 6) and h_ours.shape == (2, 6)
    torch.testing.assert_close(out_ours, out_theirs)
    torch.testing.assert_close(h_ours, h_theirs)


def test_state_dict_round_trip_and_dropout_between_layers():
    ours, theirs = _pair(2, True, False, "tanh", dtype=torch.float32)
    exported = nn.RNN(3, 5, 2, bidirectional=True)
    exported.load_state_dict(ours.torch_state_dict())
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(exported(x)[0], theirs(x)[0])
    again = RNN(3, 5, 2, bidirectional=True)
    again.load_state_dict(ours.state_dict())
    torch.testing.assert_close(again(x)[0], ours(x)[0])
    dropped = RNN(3, 5, 3, dropout=0.5)
    dropped.load_state_dict(RNN(3, 5, 3).state_dict())
    torch.manual_seed(0)
    first = dropped(x)[0]
    torch.manual_seed(0)
    assert torch.equal(first, dropped(x)[0])  # the masks follow the seed
    assert not torch.allclose(first, dropped.eval()(x)[0])  # and are off in eval mode


def test_gradcheck():
    ours, _ = _pair(2, True, True, "tanh")
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ours(x)[0], (x,))


class _Holder(nn.Module):
    """A model that holds its RNN one level down, as users' models do."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.rnn = rnn
        self.head = nn.Linear(10, 1)


def test_a_module_holding_the_layer_loads_its_nn_rnn_checkpoint():
    torch.manual_seed(0)
    theirs = _Holder(nn.RNN(3, 5, 2, bidirectional=True))
    ours = _Holder(RNN(3, 5, 2, bidirectional=True))
    result = ours.load_state_dict(theirs.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(ours.encoder.rnn(x)[0], theirs.encoder.rnn(x)[0])
    torch.testing.assert_close(ours.head.weight, theirs.head.weight)


def test_strict_false_reports_a_partial_nn_rnn_checkpoint_as_nn_rnn_does():
    state = {k: v for k, v in nn.RNN(3, 5, 2).state_dict().items() if not k.endswith("l1")}
    theirs = nn.RNN(3, 5, 2).load_state_dict(state, strict=False)
    ours = RNN(3, 5, 2)
    before = ours.cell("l1").A.detach().clone()
    result = ours.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not theirs.unexpected_keys
    # layer 1, as nn.RNN misses it, under our names
    assert result.missing_keys == ["stack.layers.1.A", "stack.layers.1.b"]
    assert torch.equal(ours.cell("l1").A, before)
    assert torch.equal(ours.cell("l0").A[:, 5:], state["weight_ih_l0"])
    with pytest.raises(RuntimeError, match="Missing key"):
        RNN(3, 5, 2).load_state_dict(state)


def test_device_and_dtype_in_the_constructor():
    ours = RNN(3, 5, 2, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in ours.parameters()} == {torch.float64}
    assert {p.device.type for p in ours.parameters()} == {"cpu"}
    assert ours(torch.randn(4, 2, 3, dtype=torch.float64))[0].dtype == torch.float64


@pytest.mark.parametrize(
    "x, hx, error, words",
    [
        (torch.randn(6, 3, 4), torch.randn(1, 2, 5), RuntimeError, "Expected hidden size"),
        (torch.randn(6, 3, 4), torch.randn(2, 3, 5), RuntimeError, "Expected hidden size"),
        (torch.randn(6, 3, 4), torch.randn(1, 3, 6), RuntimeError, "Expected hidden size"),
        (torch.randn(6, 4), torch.randn(1, 3, 5), RuntimeError, "hx should also be 2-D"),
        (torch.randn(6, 3, 3), None, RuntimeError, "must be equal to input_size"),
        (torch.randn(4), None, ValueError, "Expected input to be 2D or 3D"),
        (torch.randn(1, 6, 3, 4), None, ValueError, "Expected input to be 2D or 3D"),
        (torch.randn(0, 3, 4), None, RuntimeError, "sequence length"),
        (torch.randn(6, 3, 4).double(), None, ValueError, "torch.float64"),
    ],
)
def test_bad_calls_raise_as_nn_rnn_raises(x, hx, error, words):
    torch.manual_seed(0)
    with pytest.raises(error, match=words):
        nn.RNN(4, 5)(x, hx)
    with pytest.raises(error, match=words):
        RNN(4, 5)(x, hx)


def test_the_drop_in_is_a_stack_of_the_keras_layers():
    """One layer stack: ``RNN`` holds a ``Stacked`` of ``SimpleRNN``s (``Bidirectional`` ones
    when reading both ways), and composing those layers by hand with its weights gives its
    outputs."""
    torch.manual_seed(0)
    ours = RNN(3, 5, 2, bidirectional=True, batch_first=True).double()
    assert isinstance(ours.stack, Stacked)
    assert all(isinstance(cell, SimpleRNN) for cell in (ours.cell("l0"), ours.cell("l1_reverse")))
    by_hand = Stacked(
        [
            elman.Bidirectional(SimpleRNN(3, 5, return_sequences=True)),
            elman.Bidirectional(SimpleRNN(10, 5, return_sequences=True)),
        ]
    ).double()
    by_hand.load_state_dict(ours.stack.state_dict())
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], by_hand(x), rtol=0, atol=0)


def test_elman_0_1_names_still_load():
    """A state dict saved by elman 0.1's ``RNN`` (``A_l0``, ``b_l0``, ...) loads into its cells."""
    ours = RNN(3, 5, 2, bidirectional=True)
    old = {}
    for name, _ in ours._cells():
        old[f"A_{name}"] = torch.randn_like(ours.cell(name).A)
        old[f"b_{name}"] = torch.randn_like(ours.cell(name).b)
    result = ours.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    for name, _ in ours._cells():
        assert torch.equal(ours.cell(name).A, old[f"A_{name}"])
        assert torch.equal(ours.cell(name).b, old[f"b_{name}"])
