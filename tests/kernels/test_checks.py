"""The kernel boundary (``elman.kernels.checks``), as property tests: random shapes, lengths,
masks, token ids and initial states. Valid ones give the reference loop's and nn.RNN's numbers;
invalid ones raise before any compiled code runs (which would read past an array's end)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from elman import RNN, SimpleRNN
from elman.kernels import run_backend
from elman.kernels.reference import reference_rnn

shapes = st.tuples(
    st.integers(1, 9),  # B (9: two groups of four and one row alone)
    st.integers(1, 8),  # T
    st.integers(1, 4),  # F
    st.integers(1, 6),  # H
)


def _layer(F: int, H: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(H, H + F, generator=generator, dtype=torch.float64) * 0.5
    return A, torch.randn(H, generator=generator, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 2**16), st.booleans(), st.sampled_from(["tanh", "relu"]))
def test_valid_masks_and_states_equal_the_reference(shape, seed, masked, activation):
    B, T, F, H = shape
    A, b = _layer(F, H, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(B, T, F, generator=generator, dtype=torch.float64)
    h0 = torch.randn(B, H, generator=generator, dtype=torch.float64)
    mask = torch.rand(B, T, generator=generator) > 0.3 if masked else None
    expected = reference_rnn(x, A, b, h0, mask, activation)
    for backend in ("fused", "torch"):
        torch.testing.assert_close(run_backend(backend, x, A, b, h0, mask, activation), expected)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**16), st.booleans())
def test_valid_packed_sequences_equal_nn_rnn(shape, seed, given_h0):
    B, T, F, H = shape
    torch.manual_seed(seed)
    theirs = nn.RNN(F, H, batch_first=True).double()
    ours = RNN(F, H, batch_first=True).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(B, T, F, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,))
    h0 = torch.randn(1, B, H, dtype=torch.float64) if given_h0 else None
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    (output, h_n), (their_output, their_h_n) = ours(packed, h0), theirs(packed, h0)
    torch.testing.assert_close(h_n, their_h_n)
    torch.testing.assert_close(
        pad_packed_sequence(output, batch_first=True)[0],
        pad_packed_sequence(their_output, batch_first=True)[0],
    )


def _off_by(size: int, change: int) -> int:
    return max(0, size + change) if size + change != size else size + 1


@settings(max_examples=60, deadline=None)
@given(
    shapes,
    st.sampled_from(["h0 batch", "h0 width", "mask batch", "mask time", "dropout rows"]),
    st.sampled_from([-2, -1, 1, 3]),
)
def test_arguments_of_the_wrong_size_raise(shape, which, change):
    B, T, F, H = shape
    A, b = _layer(F, H, 0)
    x = torch.randn(B, T, F, dtype=torch.float64)
    h0, mask, drop = torch.zeros(B, H, dtype=torch.float64), None, None
    if which == "h0 batch":
        h0 = torch.zeros(_off_by(B, change), H, dtype=torch.float64)
    elif which == "h0 width":
        h0 = torch.zeros(B, _off_by(H, change), dtype=torch.float64)
    elif which == "mask batch":
        mask = torch.ones(_off_by(B, change), T, dtype=torch.bool)
    elif which == "mask time":
        mask = torch.ones(B, _off_by(T, change), dtype=torch.bool)
    else:
        drop = torch.ones(_off_by(B, change), H, dtype=torch.float64)
    with pytest.raises(ValueError, match="must have shape"):
        run_backend("fused", x, A, b, h0, mask, "tanh", drop)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 12),
    st.integers(2, 30),
    st.sampled_from([-(2**40), -1, 0, 1, 2**40]),  # how far outside: below 0, or from V up
    st.booleans(),
)
def test_token_ids_outside_the_vocabulary_raise_index_error(B, T, V, outside, words_only):
    layer = SimpleRNN(3, 4)
    embedding = torch.randn(V, 3)
    ids = torch.randint(1, V, (B, T))
    bad = outside if outside < 0 else V + outside
    ids[torch.randint(0, B, ()), torch.randint(0, T, ())] = bad
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(IndexError, match="vocabulary"):
            layer.from_ids(ids, embedding, words_only=words_only)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 12), st.integers(2, 30), st.booleans())
def test_valid_token_ids_equal_the_embedded_layer(B, T, V, words_only):
    torch.manual_seed(B * 1000 + T * 10 + V)
    layer, embedding = SimpleRNN(3, 4).double(), torch.randn(V, 3, dtype=torch.float64)
    ids = torch.randint(0, V, (B, T))
    ids[:, : T // 2] = 0  # padding in front, as the reviews are padded
    x = torch.nn.functional.embedding(ids, embedding)
    expected = layer(x, mask=ids != 0) if words_only else layer(x)
    torch.testing.assert_close(layer.from_ids(ids, embedding, words_only=words_only), expected)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda: SimpleRNN(3, 4)(torch.randn(2, 5, 3), lengths=torch.tensor([6, 1])),
            ValueError,
            "lengths must lie",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4)(torch.randn(2, 5, 3), lengths=torch.tensor([-1, 1])),
            ValueError,
            "lengths must lie",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4)(torch.randn(2, 5, 3), lengths=torch.tensor([1, 2, 3])),
            ValueError,
            "lengths must have shape",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4)(torch.randn(2, 5, 3), lengths=torch.tensor([1.0, 2.0])),
            ValueError,
            "integers",
        ),  # fmt: skip
        (lambda: SimpleRNN(3, 4)(torch.randn(2, 5, 3).double()), ValueError, "convert"),
        (
            lambda: SimpleRNN(3, 4)(torch.ones(2, 5, 3, dtype=torch.long)),
            ValueError,
            "floating point",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4).from_ids(torch.ones(2, 5), torch.randn(9, 3)),
            ValueError,
            "int64 or int32",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4).from_ids(torch.ones(2, 5, 1).long(), torch.randn(9, 3)),
            ValueError,
            "shape \\(batch, time\\)",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4).from_ids(torch.ones(2, 5).long(), torch.randn(9, 3), 9),
            IndexError,
            "padding id 9",
        ),  # fmt: skip
        (
            lambda: SimpleRNN(3, 4, backend="fused").bfloat16()(torch.randn(2, 5, 3).bfloat16()),
            ValueError,
            "float32 or float64",
        ),  # fmt: skip
    ],
)
def test_other_bad_arguments_say_what_to_do(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_other_floating_dtypes_run_on_the_reference_loop_as_nn_rnn_does():
    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        theirs = nn.RNN(3, 4, batch_first=True).to(dtype)
        ours = RNN(3, 4, batch_first=True, dtype=dtype)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(2, 5, 3).to(dtype)
        output, h_n = ours(x)
        assert output.dtype == dtype
        torch.testing.assert_close(output.float(), theirs(x)[0].float(), atol=2e-2, rtol=2e-2)
