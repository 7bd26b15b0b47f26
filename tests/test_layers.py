"""The Keras-style layer, complete: go_backwards, dropout, recurrent dropout, stateful,
Bidirectional; each against a loop written here with Keras' documented semantics."""

import json

import pytest
import torch

from elman import Bidirectional, SimpleRNN
from elman.kernels import run_backend
from elman.kernels.reference import reference_rnn


def _keras_loop(layer, x, mask=None, input_mask=None, recurrent_mask=None, backwards=False):
    """Keras' SimpleRNN step by step: h_t = act((x_t ⊙ m) W_x + (h_{t-1} ⊙ r) W_h + b);
    a masked step keeps h; ``backwards`` walks t = T-1 .. 0 and lists states in that order."""
    H = layer.hidden_size
    W_h, W_x = layer.A[:, :H], layer.A[:, H:]
    act = torch.tanh if layer.activation == "tanh" else torch.relu
    h = x.new_zeros(x.shape[0], H)
    states = []
    steps = range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])
    for t in steps:
        x_t = x[:, t] if input_mask is None else x[:, t] * input_mask
        h_in = h if recurrent_mask is None else h * recurrent_mask
        new = act(x_t @ W_x.T + h_in @ W_h.T + layer.b)
        h = new if mask is None else torch.where(mask[:, t, None], new, h)
        states.append(h)
    return torch.stack(states, 1)


def _padded(pre: bool):
    torch.manual_seed(0)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 1, 6])
    steps = torch.arange(9)[None, :]
    mask = steps >= 9 - lengths[:, None] if pre else steps < lengths[:, None]
    return x, mask


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("pre", [True, False])
def test_go_backwards_reads_valid_steps_last_to_first(backend, pre):
    x, mask = _padded(pre)
    layer = SimpleRNN(3, 5, return_sequences=True, go_backwards=True, backend=backend).double()
    expected = _keras_loop(layer, x, mask, backwards=True)
    torch.testing.assert_close(layer(x, mask=mask), expected)
    # the last state is the one after each sample's FIRST valid step, whatever its padding
    for row in range(4):
        first = int(mask[row].int().argmax())
        alone = _keras_loop(layer, x[row : row + 1, first:][:, mask[row, first:]], backwards=True)
        torch.testing.assert_close(layer(x, mask=mask)[row, -1], alone[0, -1])


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_dropout_and_recurrent_dropout_are_keras_masks(backend):
    x, mask = _padded(True)
    layer = SimpleRNN(
        3, 5, return_sequences=True, dropout=0.3, recurrent_dropout=0.4, backend=backend
    ).double()
    torch.manual_seed(7)
    got = layer(x, mask=mask)
    torch.manual_seed(7)  # the same draws, in the layer's order: input mask, then recurrent
    input_mask = SimpleRNN.dropout_mask(4, 3, 0.3, x)
    recurrent_mask = SimpleRNN.dropout_mask(4, 5, 0.4, x)
    assert (input_mask == 0).any() and (recurrent_mask == 0).any()
    torch.testing.assert_close(got, _keras_loop(layer, x, mask, input_mask, recurrent_mask))
    torch.manual_seed(7)
    assert torch.equal(layer(x, mask=mask), got)  # reproducible with the seed
    layer.eval()  # off outside training
    torch.testing.assert_close(layer(x, mask=mask), _keras_loop(layer, x, mask))


def test_zero_dropout_is_bit_identical_to_the_plain_layer():
    x = torch.randn(6, 20, 4)
    plain = SimpleRNN(4, 8, return_sequences=True)
    zero = SimpleRNN(4, 8, return_sequences=True, dropout=0.0, recurrent_dropout=0.0)
    zero.load_state_dict(plain.state_dict())
    assert torch.equal(plain(x), zero(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_recurrent_dropout_gradients_equal_the_reference(dtype):
    torch.manual_seed(1)
    x = torch.randn(5, 12, 3, dtype=dtype, requires_grad=True)
    A = (torch.randn(6, 9, dtype=dtype) * 0.4).requires_grad_()
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    h0 = torch.randn(5, 6, dtype=dtype, requires_grad=True)
    mask = torch.rand(5, 12) > 0.3
    drop = SimpleRNN.dropout_mask(5, 6, 0.5, x)
    results = []
    for backend in ("reference", "fused"):
        for t in (x, A, b, h0):
            t.grad = None
        states = run_backend(backend, x, A, b, h0, mask, "tanh", drop)
        (states * torch.linspace(-1, 1, 6, dtype=dtype)).sum().backward()
        results.append([states.detach(), x.grad, A.grad, b.grad, h0.grad])
    tolerance = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **tolerance)


def test_gradcheck_recurrent_dropout():
    torch.manual_seed(2)
    x = torch.randn(3, 6, 2, dtype=torch.float64, requires_grad=True)
    A = (torch.randn(4, 6, dtype=torch.float64) * 0.5).requires_grad_()
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    drop = SimpleRNN.dropout_mask(3, 4, 0.5, x)
    mask = torch.rand(3, 6) > 0.3

    def fused(x, A, b, h0):
        return run_backend("fused", x, A, b, h0, mask, "tanh", drop)

    assert torch.autograd.gradcheck(fused, (x, A, b, h0))
    torch.testing.assert_close(fused(x, A, b, h0), reference_rnn(x, A, b, h0, mask, "tanh", drop))


def test_stateful_chunks_equal_one_pass():
    torch.manual_seed(3)
    x = torch.randn(3, 30, 2)
    layer = SimpleRNN(2, 7, return_sequences=True, stateful=True)
    whole = layer(x)
    layer.reset_states()
    chunks = torch.cat([layer(chunk) for chunk in x.split(7, dim=1)], dim=1)
    torch.testing.assert_close(chunks, whole)
    with pytest.raises(ValueError, match="reset_states"):
        layer(x[:2])
    layer.reset_states()
    torch.testing.assert_close(layer(x[:, :7]), whole[:, :7])  # from zeros again


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
@pytest.mark.parametrize("pre", [True, False])
def test_bidirectional_with_masks(merge_mode, pre):
    x, mask = _padded(pre)
    torch.manual_seed(4)
    both = Bidirectional(SimpleRNN(3, 5, return_sequences=True), merge_mode).double()
    ahead = _keras_loop(both.forward_layer, x, mask)
    behind = _keras_loop(both.backward_layer, x, mask, backwards=True).flip(1)
    expected = torch.cat([ahead, behind], -1) if merge_mode == "concat" else ahead + behind
    torch.testing.assert_close(both(x, mask=mask), expected)
    assert not torch.equal(both.forward_layer.A, both.backward_layer.A)  # own weights
    last = Bidirectional(SimpleRNN(3, 5), merge_mode).double()
    assert last(x, mask=mask).shape == (4, 10 if merge_mode == "concat" else 5)


def test_models_stack_and_count_parameters():
    from elman.models import ModelConfig, ReviewClassifier, SequenceConfig, SequenceModel

    model = ReviewClassifier(ModelConfig(layers=2, bidirectional=True))
    # Embedding(10000, 32), two directions of SimpleRNN(32) on 32, two on 64, Dense(64 -> 1)
    assert (
        sum(p.numel() for p in model.parameters()) == 320_000 + 2 * 2_080 + 2 * (32 * 96 + 32) + 65
    )
    ids = torch.randint(0, 10_000, (3, 500))
    ids[0, :450] = 0
    with torch.no_grad():  # the fast path (ids into the bottom layer) is the plain function
        torch.testing.assert_close(model(ids), model(ids, layer_by_layer=True))
    numbers = SequenceModel(SequenceConfig(input_size=2, layers=3, dropout=0.2), classes=3)
    x = torch.randn(4, 11, 2)
    x[1, 6:] = float("nan")
    assert numbers(x).shape == (4, 3)


@pytest.mark.slow
def test_stacked_bidirectional_dropout_model_trains_from_the_command_line(tmp_path, real_archive):
    from conftest import run_elman

    out = tmp_path / "model"
    result = run_elman(
        "train", "imdb", "--data", str(real_archive), "--cache-dir", str(tmp_path / "cache"),
        "--layers", "2", "--bidirectional", "--dropout", "0.2", "--recurrent-dropout", "0.2",
        "--max-len", "100", "--epochs", "1", "--hidden-size", "16", "--lr", "0.005",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Stacked (rnn)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    # one epoch on 100 words, --seed 0-4 here: 0.716 0.735 0.719 0.670 0.688 (mean 0.706,
    # sd 0.026; chance 0.5): 0.6 is 0.07 below the lowest seed
    assert metrics["test_acc"] > 0.6, metrics
    predicted = run_elman("predict", "--model", str(out), "--json", "A wonderful, moving film.")
    assert predicted.returncode == 0, predicted.stderr
    # explained too (the model run on each cut of the text): its last step is the prediction
    explained = run_elman(
        "explain",
        "--model",
        str(out),
        "--out",
        str(tmp_path / "explain"),
        "A wonderful, moving film.",
    )
    assert explained.returncode == 0, explained.stderr
    reading = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert reading["words"] == ["a", "wonderful", "moving", "film"]
    probability = json.loads(predicted.stdout)[0]["probability"]
    assert reading["probabilities"][-1] == pytest.approx(probability, abs=1e-6)


def _words_dropped_loop(layer, ids, embedding, input_mask, recurrent_mask, padding_id=0):
    """``from_ids`` in training, step by step: the padding in front read undropped, each word's
    step with Keras' masks (x_t ⊙ m, h_{t-1} ⊙ r)."""
    H = layer.hidden_size
    W_h, W_x = layer.A[:, :H], layer.A[:, H:]
    h = embedding.new_zeros(ids.shape[0], H)
    is_word = (ids != padding_id).cumsum(1) > 0  # from each review's first word on
    for t in range(ids.shape[1]):
        x_t = embedding[ids[:, t]]
        dropped = torch.tanh((x_t * input_mask) @ W_x.T + (h * recurrent_mask) @ W_h.T + layer.b)
        plain = torch.tanh(x_t @ W_x.T + h @ W_h.T + layer.b)
        h = torch.where(is_word[:, t, None], dropped, plain)
    return h


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("input_dropout", [0.0, 0.3])
def test_from_ids_drops_on_words_and_reads_the_padding_once(backend, input_dropout):
    torch.manual_seed(4)
    ids = torch.randint(1, 20, (6, 15))
    for row, padding in enumerate([0, 3, 9, 14, 15, 7]):
        ids[row, :padding] = 0
    embedding = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    layer = SimpleRNN(3, 5, dropout=input_dropout, recurrent_dropout=0.4, backend=backend).double()
    torch.manual_seed(11)
    got = layer.from_ids(ids, embedding)
    (got * torch.linspace(-1, 1, 5, dtype=torch.float64)).sum().backward()
    grads = [embedding.grad, layer.A.grad, layer.b.grad]
    torch.manual_seed(11)  # the same draws, in the layer's order
    input_mask = SimpleRNN.dropout_mask(6, 3, input_dropout, embedding)
    recurrent_mask = SimpleRNN.dropout_mask(6, 5, 0.4, embedding)
    input_mask = torch.ones(6, 3, dtype=torch.float64) if input_mask is None else input_mask
    for t in (embedding, layer.A, layer.b):
        t.grad = None
    want = _words_dropped_loop(layer, ids, embedding, input_mask, recurrent_mask)
    (want * torch.linspace(-1, 1, 5, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(got, want)
    for got_grad, want_grad in zip(
        grads, [embedding.grad, layer.A.grad, layer.b.grad], strict=True
    ):
        torch.testing.assert_close(got_grad, want_grad)
    layer.eval()  # outside training: exactly the layer over the embedded ids
    torch.testing.assert_close(
        layer.from_ids(ids, embedding), layer(torch.nn.functional.embedding(ids, embedding))
    )


def test_gradcheck_fused_ids_with_recurrent_dropout():
    from elman.kernels.ids import embedded_rnn

    torch.manual_seed(5)
    ids = torch.randint(0, 7, (3, 8))
    start = torch.tensor([0, 3, 8])
    table = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    W_h = (torch.randn(4, 4, dtype=torch.float64) * 0.5).requires_grad_()
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    drop = SimpleRNN.dropout_mask(3, 4, 0.5, table)

    def fused(table, W_h, h0):
        return embedded_rnn(ids, start, table, W_h, h0, "tanh", drop)

    assert torch.autograd.gradcheck(fused, (table, W_h, h0))
