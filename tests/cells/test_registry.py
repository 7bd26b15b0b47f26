"""The registry of cell kinds: what each kind says it can do is what its layer does, and a new
kind is one module's worth of code plus ``register``, picked up with no edit elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from elman import cells
from elman.cells import CELLS, CellKind
from elman.config import ModelConfig, SequenceConfig, TrainConfig
from elman.errors import UserError
from elman.models import ReviewClassifier, SequenceModel, summary
from elman.train import evaluate, fit


# --- a toy cell, as a user would add one: h_t = tanh(d ⊙ h_{t-1} + W x_t + b) ----------------
class DiagonalRNN(nn.Module):
    """A recurrence with a diagonal matrix: each unit feeds back only into itself."""

    def __init__(self, input_size: int, hidden_size: int, return_sequences: bool) -> None:
        super().__init__()
        self.hidden_size, self.return_sequences = hidden_size, return_sequences
        self.d = nn.Parameter(torch.full((hidden_size,), 0.5))
        self.input = nn.Linear(input_size, hidden_size)

    def forward(self, x: Tensor, *, lengths: Tensor | None = None) -> Tensor:
        h, states = x.new_zeros(x.shape[0], self.hidden_size), []
        for t in range(x.shape[1]):
            stepped = torch.tanh(self.d * h + self.input(x[:, t]))
            h = stepped if lengths is None else torch.where((t < lengths)[:, None], stepped, h)
            states.append(h)
        return torch.stack(states, 1) if self.return_sequences else h


def _build(settings, input_size: int, return_sequences: bool) -> DiagonalRNN:
    return DiagonalRNN(input_size, settings.hidden_size, return_sequences)


def _read_words(rnn, embedding, ids, padding_id, mask_padding, layer_by_layer=False):
    return rnn(embedding(ids)), None


def _step(rnn: DiagonalRNN, zero: Tensor):
    return (lambda h, x: torch.tanh(rnn.d * h + rnn.input(x))), zero


DIAGONAL = CellKind(
    name="diagonal",
    help="a diagonal recurrence (a test's toy)",
    build=_build,
    read_words=_read_words,
    pools=True,
    step=_step,
)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def diagonal():
    cells.register(DIAGONAL)
    yield DIAGONAL
    del CELLS[DIAGONAL.name]


def test_a_registered_cell_trains_on_real_reviews_with_no_edit_elsewhere(diagonal, small_real):
    train, val = small_real
    assert "diagonal" in cells.names(texts=True) and "diagonal" in cells.names(texts=False)
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig("diagonal", vocab_size=2000, max_len=40, hidden_size=8))
    assert isinstance(model.rnn, DiagonalRNN) and "DiagonalRNN" in summary(model)
    before = evaluate(model, val)["loss"]
    config = TrainConfig(epochs=3, patience=None, device="cpu")
    fit(model, train, val, config, log=lambda _: None, progress=False)
    assert evaluate(model, val)["loss"] < before  # it learns from the words


def test_a_registered_cell_reads_numbers_pools_and_is_held_to_its_rules(diagonal):
    model = SequenceModel(SequenceConfig("diagonal", input_size=2, pooling="max+mean"), classes=3)
    x = torch.randn(4, 9, 2)
    x[0, 5:] = float("nan")  # a shorter series
    assert model(x).shape == (4, 3)
    with pytest.raises(UserError, match="`layers`"):  # the kind does not stack
        ModelConfig("diagonal", layers=2).validate()
    with pytest.raises(UserError, match="`bidirectional`"):
        SequenceConfig("diagonal", bidirectional=True).validate()
    with pytest.raises(UserError, match="`tbptt`"):  # nor read in chunks
        cells.check_chunks(SequenceConfig("diagonal"), "diagonal")


def test_the_analysis_replays_a_registered_cell_by_its_own_step(diagonal):
    from elman.analysis.cells import step_function

    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig("diagonal", vocab_size=30, max_len=6, hidden_size=5))
    ids = torch.randint(3, 30, (1, 6))
    step, h = step_function(model)
    for x in model.embedding(ids)[0]:
        h = step(h, x[None])
    torch.testing.assert_close(h[0], model.rnn(model.embedding(ids))[0])


@pytest.mark.parametrize("name", list(CELLS))
def test_each_kind_builds_what_it_says(name):
    """Every registered kind: its layer's width, its states or last state, and the rules it
    states (stacking, directions, pooling, chunks) are what the model then does."""
    kind = CELLS[name]
    if kind.numbers_only:
        with pytest.raises(UserError, match="`architecture` must be one of"):
            ModelConfig(name)
    else:
        config = ModelConfig(name, vocab_size=40, max_len=7, hidden_size=6)
        model = ReviewClassifier(config)
        ids = torch.randint(0, 40, (3, 7))
        assert model(ids).shape == (3,)
        if kind.build is None:
            assert model.rnn is None
            return
        assert model.rnn.hidden_size == 6
        assert model.cell is kind
    if kind.bidirectional:
        both = ReviewClassifier(ModelConfig(name, vocab_size=40, max_len=7, bidirectional=True))
        assert both.rnn.hidden_size == 2 * 32
    if kind.stacks:
        ReviewClassifier(ModelConfig(name, vocab_size=40, max_len=7, layers=2))
    if not kind.texts_only:
        sequence = SequenceModel(SequenceConfig(name, input_size=2), classes=2)
        assert sequence(torch.randn(3, 5, 2)).shape == (3,)
        if kind.chunks:
            output, state = sequence.read_chunk(torch.randn(3, 4, 2))
            assert output.shape == (3,) and state.shape == (3, 32)


def test_unknown_kinds_are_refused_with_the_choices():
    with pytest.raises(UserError, match="`architecture` must be one of rnn, rnn-all-states"):
        ModelConfig("elman-jordan").validate()
    with pytest.raises(UserError, match="must be one of rnn, lstm, gru"):  # texts-only left out
        SequenceConfig("shallow").validate()
    with pytest.raises(ValueError, match="registered already"):
        cells.register(CELLS["rnn"])
