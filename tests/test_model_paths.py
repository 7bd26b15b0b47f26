"""Every way the classifier can compute its output is the same function as the plain one:
embedding, then the reference SimpleRNN loop over all 500 steps, padding included."""

import pytest
import torch

from elman.models import ModelConfig, ReviewClassifier

PLAIN = ("reference", True)
PATHS = {
    # name: (rnn backend, layer_by_layer)
    "reference, shared padding": ("reference", False),
    "fused layer": ("fused", True),
    "fused embedding+rnn on ids": ("fused", False),
    "auto on ids": ("auto", False),
}


def _ids(vocab_size=50, steps=30, pads=(0, 5, 29, 30, 12, 3), seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (len(pads), steps), generator=generator)
    for row, n in enumerate(pads):
        ids[row, :n] = 0
    return ids


def _outputs_and_gradients(model, ids, path):
    backend, layer_by_layer = path
    model.rnn.backend = backend
    model.zero_grad()
    logits = model(ids, layer_by_layer=layer_by_layer)
    (logits * torch.arange(1, len(ids) + 1, dtype=logits.dtype)).sum().backward()
    return [logits.detach().clone()] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("architecture", ["rnn", "rnn-all-states"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_every_path_equals_the_plain_reference(path, architecture, activation):
    torch.manual_seed(0)
    config = ModelConfig(architecture, vocab_size=50, max_len=30, activation=activation)
    model = ReviewClassifier(config).double()
    ids = _ids()
    expected = _outputs_and_gradients(model, ids, PLAIN)
    for got, want in zip(_outputs_and_gradients(model, ids, PATHS[path]), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_fused_ids_path_in_float32_and_with_repeated_words():
    torch.manual_seed(1)
    model = ReviewClassifier(ModelConfig(vocab_size=8, max_len=40))
    ids = _ids(vocab_size=8, steps=40, pads=(0, 39, 10, 2, 40, 17, 0, 5))  # words repeat a lot
    expected = _outputs_and_gradients(model, ids, PLAIN)
    actual = _outputs_and_gradients(model, ids, PATHS["fused embedding+rnn on ids"])
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_inference_from_ids_equals_reference_and_follows_weight_changes():
    torch.manual_seed(1)
    model = ReviewClassifier(ModelConfig(vocab_size=60, max_len=25)).eval()
    ids = _ids(vocab_size=60, steps=25, pads=(0, 3, 24, 25, 10, 1, 7))

    def reference_logits():
        model.rnn.backend = "reference"
        try:
            with torch.no_grad():
                return model(ids, layer_by_layer=True)
        finally:
            model.rnn.backend = "auto"

    with torch.no_grad():
        fast = model(ids)
    torch.testing.assert_close(fast, reference_logits(), rtol=1e-5, atol=1e-5)
    # Changing weights in place (as an optimizer does) must not leave a stale projection table.
    with torch.no_grad():
        model.embedding.weight[5:40] += 0.3
        model.rnn.A.mul_(1.5)
        fast_after = model(ids)
    assert not torch.allclose(fast_after, fast)
    torch.testing.assert_close(fast_after, reference_logits(), rtol=1e-5, atol=1e-5)


def test_fused_training_is_deterministic():
    ids = _ids(vocab_size=50, steps=30, pads=(0, 5, 29, 30, 12, 3) * 3)

    def gradients():
        torch.manual_seed(2)
        model = ReviewClassifier(ModelConfig(vocab_size=50, max_len=30))
        model(ids).sum().backward()
        return [p.grad for p in model.parameters()]

    for first, again in zip(gradients(), gradients(), strict=True):
        assert torch.equal(first, again)
