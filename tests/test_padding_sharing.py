"""The model computes the states over leading padding once for all reviews: same function."""

import pytest
import torch

from elman.models import ModelConfig, ReviewClassifier


@pytest.mark.parametrize("architecture", ["rnn", "rnn-all-states"])
@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_shared_padding_trajectory_gives_same_outputs_and_gradients(architecture, backend):
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(architecture, vocab_size=50, max_len=30)).double()
    model.rnn.backend = backend
    ids = torch.randint(1, 50, (6, 30))
    for row, pads in enumerate([0, 5, 29, 30, 12, 3]):
        ids[row, :pads] = 0
    results = []
    for share in (False, True):
        model.share_padding = share
        model.zero_grad()
        logits = model(ids)
        (logits * torch.arange(6)).sum().backward()
        results.append([logits.detach().clone()] + [p.grad.clone() for p in model.parameters()])
    for shared, plain in zip(*results, strict=True):
        torch.testing.assert_close(shared, plain)


def test_inference_from_ids_equals_reference_and_follows_weight_changes():
    torch.manual_seed(1)
    model = ReviewClassifier(ModelConfig(vocab_size=60, max_len=25)).eval()
    ids = torch.randint(1, 60, (7, 25))
    for row, pads in enumerate([0, 3, 24, 25, 10, 1, 7]):
        ids[row, :pads] = 0

    def reference_logits():
        model.rnn.backend, model.share_padding = "reference", False
        try:
            with torch.no_grad():
                return model(ids)
        finally:
            model.rnn.backend, model.share_padding = "auto", True

    with torch.no_grad():
        assert model._can_read_ids_directly(ids)
        fast = model(ids)
    torch.testing.assert_close(fast, reference_logits(), rtol=1e-5, atol=1e-5)
    # Changing a weight in place (as an optimizer does) must not leave a stale projection table.
    with torch.no_grad():
        model.embedding.weight[5:40] += 0.3
        model.rnn.A.mul_(1.5)
        fast_after = model(ids)
    assert not torch.allclose(fast_after, fast)
    torch.testing.assert_close(fast_after, reference_logits(), rtol=1e-5, atol=1e-5)
    with torch.enable_grad():
        assert not model._can_read_ids_directly(ids)  # training keeps the autograd path
