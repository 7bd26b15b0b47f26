"""The recipe's ingredients: pooling over the states read, masked padding, head dropout, Adam."""

import pytest
import torch

from elman.config import ModelConfig, SequenceConfig, TrainConfig
from elman.errors import UserError
from elman.models import ReviewClassifier, SequenceModel, pooled
from elman.train import RMSprop, make_optimizer


def test_pooled_takes_max_and_mean_over_the_steps_read_only():
    torch.manual_seed(0)
    states = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    features = pooled(states, mask, "max+mean")
    for row in range(2):
        read = states[row, mask[row]]
        torch.testing.assert_close(features[row, :4], read.max(0).values)
        torch.testing.assert_close(features[row, 4:], read.mean(0))
    assert torch.equal(features[2], torch.zeros(8))  # nothing read: zeros, not -inf or NaN
    torch.testing.assert_close(pooled(states, None, "mean"), states.mean(1))


def _classifier(**settings) -> ReviewClassifier:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, embedding_dim=6, hidden_size=5, max_len=12, **settings)
    return ReviewClassifier(config).eval()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "max+mean"])
def test_masked_padding_makes_the_verdict_independent_of_the_padding(bidirectional, pooling):
    model = _classifier(mask_padding=True, bidirectional=bidirectional, pooling=pooling)
    words = torch.randint(3, 40, (2, 7))
    short = torch.cat([torch.zeros(2, 5, dtype=torch.long), words], 1)  # 5 padding ids first
    torch.testing.assert_close(model(short), model(words))  # the same review, less padding
    # the reference reading (padding read as input) does depend on it
    reads_padding = _classifier(bidirectional=bidirectional, pooling=pooling)
    reads_padding.load_state_dict(model.state_dict())
    assert not torch.allclose(reads_padding(short), model(short))


def test_head_dropout_acts_in_training_only():
    model = _classifier(pooling="max+mean", head_dropout=0.5)
    ids = torch.randint(3, 40, (8, 12))
    evaluated = model(ids)
    assert torch.equal(evaluated, model(ids))
    model.train()
    torch.manual_seed(1)
    assert not torch.allclose(model(ids), evaluated)


def test_speech_model_pools_over_each_recordings_frames():
    torch.manual_seed(0)
    model = SequenceModel(SequenceConfig(input_size=3, hidden_size=4, pooling="mean"), classes=3)
    model.eval()
    x = torch.randn(2, 6, 3)
    x[1, 4:] = float("nan")  # the second recording has 4 frames
    logits = model(x)
    alone = model(x[1:2, :4])
    torch.testing.assert_close(logits[1:2], alone)


def test_adam_and_rmsprop_are_both_offered():
    model = _classifier()
    assert isinstance(make_optimizer(model, TrainConfig()), RMSprop)
    adam = make_optimizer(model, TrainConfig(optimizer="adam", lr=2e-3))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 2e-3
    with pytest.raises(UserError, match="`optimizer` must be one of"):
        TrainConfig(optimizer="sgd").validate()


@pytest.mark.parametrize(
    "settings",
    [
        {"architecture": "shallow", "pooling": "max"},
        {"architecture": "rnn-all-states", "pooling": "mean"},
    ],
)
def test_pooling_is_refused_where_there_are_no_states_to_pool(settings):
    with pytest.raises(UserError, match="use `pooling` last"):
        ModelConfig(**settings).validate()
    with pytest.raises(UserError, match="use `pooling` last"):
        SequenceConfig(input_size=2, task="forecast", pooling="max").validate()


def test_lr_decay_sets_each_epochs_rate(small_real):
    from elman.train import fit

    train, val = small_real

    def trained(**settings) -> dict:
        torch.manual_seed(0)
        model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=6))
        config = TrainConfig(patience=None, **settings)
        fit(model, train, val, config, log=lambda _: None, progress=False)
        return model.state_dict()

    one = trained(epochs=1)
    frozen_after_one = trained(epochs=2, lr_decay=1e-9)  # epoch 2 at 1e-12: hardly moves
    plain = trained(epochs=2)
    for name, weights in one.items():
        torch.testing.assert_close(frozen_after_one[name], weights, rtol=0, atol=1e-6)
    assert not torch.allclose(plain["dense.weight"], one["dense.weight"], atol=1e-4)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max+mean"])
def test_gated_models_take_the_same_ingredients(kind, pooling):
    """--model lstm|gru with --bidirectional --mask-padding --pooling: each review's words read
    forwards and backwards by torch's own layer, one review at a time, without any padding."""
    model = _classifier(architecture=kind, bidirectional=True, mask_padding=True, pooling=pooling)
    ids = torch.randint(3, 40, (3, 12))
    ids[0, :4] = 0  # padding in front of two reviews (pre-padding, as IMDB's)
    ids[1, :9] = 0
    layer, H = model.rnn.layer, 5
    expected = []
    for row in ids:
        embedded = model.embedding(row[row != 0])[None]  # (1, words, E)
        states, final = layer(embedded)  # one review alone: no padding anywhere
        hidden = final[0] if kind == "lstm" else final
        if pooling == "last":
            expected.append(torch.cat([hidden[0, 0], hidden[1, 0]]))
        else:
            expected.append(torch.cat([states[0].max(0).values, states[0].mean(0)]))
        assert states.shape[-1] == 2 * H
    logits = model.dense(torch.stack(expected)).squeeze(-1)
    torch.testing.assert_close(model(ids), logits)
    bigger = torch.cat([torch.zeros(3, 5, dtype=torch.long), ids], 1)  # more padding: same
    torch.testing.assert_close(model(bigger), model(ids))


def test_gated_models_refuse_what_they_do_not_have():
    with pytest.raises(UserError, match="the lstm model takes none of them"):
        ModelConfig(architecture="lstm", layers=2).validate()
    with pytest.raises(UserError, match="the shallow model has none"):
        ModelConfig(architecture="shallow", bidirectional=True).validate()
