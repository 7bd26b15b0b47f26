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
