import math

import torch

from elman.cli import main
from elman.models import ModelConfig, ReviewClassifier, count_parameters, summary


def test_reference_model_summary_counts():
    table = summary(ReviewClassifier(ModelConfig()))
    assert "320,000" in table and "2,080" in table
    assert "Total params: 322,113" in table
    assert "Trainable params: 322,113" in table and "Non-trainable params: 0" in table
    dense_row = next(line for line in table.splitlines() if "(dense)" in line)
    assert dense_row.split()[-1] == "33"


def test_summary_runs_a_copy_on_the_reference_loops_and_leaves_the_model_as_it_was():
    model = ReviewClassifier(ModelConfig(hidden_size=8, max_len=30))
    model.embedding.weight.requires_grad_(False)  # a frozen layer: the copy keeps it frozen
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    table = summary(model)
    assert "Non-trainable params: 320,000" in table
    assert "[1, 8]" in next(line for line in table.splitlines() if "(rnn)" in line)
    assert model.rnn.backend == "auto"  # the model itself still runs its compiled kernels
    assert all(torch.equal(weights[name], t) for name, t in model.state_dict().items())


def test_all_states_variant_has_16001_dense_weights():
    model = ReviewClassifier(ModelConfig("rnn-all-states"))
    assert model.dense.weight.numel() + model.dense.bias.numel() == 16_001
    assert "16,001" in summary(model)
    assert count_parameters(model) == 320_000 + 2_080 + 16_001


def test_shallow_baseline():
    model = ReviewClassifier(ModelConfig("shallow", embedding_dim=8, max_len=20))
    assert count_parameters(model) == 80_000 + 161
    assert model(torch.zeros(3, 20, dtype=torch.long)).shape == (3,)


def test_keras_initialisation_of_embedding_and_dense():
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig())
    assert model.embedding.weight.abs().max() <= 0.05
    assert model.embedding.weight.abs().max() > 0.049
    limit = math.sqrt(6 / (32 + 1))
    assert model.dense.weight.abs().max() <= limit
    assert torch.count_nonzero(model.dense.bias) == 0


def test_logits_and_probabilities():
    model = ReviewClassifier(ModelConfig(vocab_size=50, max_len=7))
    ids = torch.randint(0, 50, (4, 7))
    torch.testing.assert_close(model.predict_proba(ids), torch.sigmoid(model(ids)))


def test_summary_command(capsys):
    assert main(["summary", "--hidden-size", "16"]) == 0
    out = capsys.readouterr().out
    # 16·(16+32) + 16 = 784
    assert "784" in out and f"Total params: {320_000 + 784 + 17:,}" in out


def test_parameter_count_without_allocating_matches_the_built_network():
    """Counted on the meta device with the initialisations skipped: the same number as the
    network built for real, for every initialisation, and no random number drawn."""
    from dataclasses import replace

    from elman.config import RunConfig
    from elman.models import build_model, parameter_count

    config = RunConfig()
    for init in ("keras", "orthogonal", "identity", "torch"):
        for layers in (1, 2):
            model = replace(config.model, init=init, layers=layers, hidden_size=24)
            run = replace(config, model=model)
            torch.manual_seed(0)
            state = torch.get_rng_state()
            counted = parameter_count(run)
            assert torch.equal(torch.get_rng_state(), state)
            assert counted == count_parameters(build_model(run))
