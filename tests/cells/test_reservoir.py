"""The echo-state network (``--model esn``): the reservoir against the simple RNN and a loop
written here, the readout against scikit-learn's ridge regression, and a model trained on real
series (GunPoint) that is saved, loaded, evaluated and predicts like any other."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

import elman
from elman.cells import CELLS
from elman.cells.reservoir import Reservoir, ridge_fits
from elman.cli import main
from elman.config import SequenceConfig
from elman.errors import UserError
from elman.kernels.reference import reference_rnn


def test_the_reservoir_is_the_simple_rnn_with_drawn_fixed_weights():
    torch.manual_seed(0)
    H, F = 200, 3
    reservoir = Reservoir(F, H, spectral_radius=0.7, input_scaling=0.5, density=0.1)
    A, b = reservoir.rnn.A, reservoir.rnn.b
    radius = torch.linalg.eigvals(A[:, :H].double()).abs().max().item()
    assert radius == pytest.approx(0.7, rel=1e-4)
    assert 0.08 < (A[:, :H] != 0).float().mean().item() < 0.12
    assert A[:, H:].abs().max() <= 0.5 and b.abs().max() <= 0.5
    assert not any(p.requires_grad for p in reservoir.parameters())
    x = torch.randn(4, 30, F)
    lengths = torch.tensor([30, 12, 1, 25])
    mask = torch.arange(30)[None, :] < lengths[:, None]
    expected = reference_rnn(x, A, b, torch.zeros(4, H), mask, "tanh")
    last = expected[torch.arange(4), lengths - 1]
    torch.testing.assert_close(reservoir(x, lengths), last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("time_scales", [1, 2])
def test_the_leaky_reservoir_is_the_leaky_loop(time_scales):
    """One leak rate, or two reservoirs side by side (leak rates 1 and 0.3, no weights between
    them, each scaled to the spectral radius)."""
    torch.manual_seed(1)
    H, F = 16, 2
    reservoir = Reservoir(F, H, leak_rate=0.3, time_scales=time_scales, return_sequences=True)
    A, b = reservoir.rnn.A, reservoir.rnn.b
    leak = torch.full((H,), 0.3)
    if time_scales == 2:
        leak[:8] = 1.0
        assert (A[:8, 8:H] == 0).all() and (A[8:H, :8] == 0).all()
        for block in (A[:8, :8], A[8:H, 8:H]):
            assert torch.linalg.eigvals(block.double()).abs().max().item() == pytest.approx(0.9)
    x = torch.randn(3, 20, F)
    lengths = torch.tensor([20, 7, 13])
    states = reservoir(x, lengths)
    for row in range(3):
        h = torch.zeros(H)
        for t in range(20):
            if t < lengths[row]:
                h = (1 - leak) * h + leak * torch.tanh(A @ torch.cat([h, x[row, t]]) + b)
            torch.testing.assert_close(states[row, t], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "hidden_size,sizes", [(256, [64] * 4), (10, [3, 3, 2, 2]), (5, [2, 1, 1, 1])]
)
def test_time_scales_share_the_units_out_evenly(hidden_size, sizes):
    """Any ``time_scales`` up to ``hidden_size`` (what the settings accept) gives that many
    blocks, their sizes as even as can be, leak rates geometric from 1 to ``leak_rate``."""
    torch.manual_seed(0)
    reservoir = Reservoir(1, hidden_size, leak_rate=0.001, time_scales=4)
    expected = torch.cat([torch.full((n,), 0.1**i) for i, n in enumerate(sizes)])
    torch.testing.assert_close(reservoir.leak_rates, expected)
    A, start = reservoir.rnn.A, 0
    for n in sizes:
        assert (A[start : start + n, :start] == 0).all()
        assert (A[start : start + n, start + n : hidden_size] == 0).all()
        start += n


def test_the_readout_is_scikit_learns_ridge_on_standardised_features():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, (40, 30)) * rng.uniform(0.1, 10, 30)
    targets = rng.normal(size=(40, 2))
    fits = ridge_fits(torch.from_numpy(features), torch.from_numpy(targets), [0.01, 1.0, 100.0])
    scaled = StandardScaler().fit(features)
    for penalty, (weights, bias) in zip([0.01, 1.0, 100.0], fits, strict=True):
        ridge = Ridge(alpha=penalty).fit(scaled.transform(features), targets)
        ours = (torch.from_numpy(features) @ weights + bias).numpy()
        np.testing.assert_allclose(ours, ridge.predict(scaled.transform(features)), atol=1e-8)


def test_reservoir_settings_are_refused_where_they_mean_nothing():
    with pytest.raises(UserError, match="`spectral_radius` shapes an echo-state network"):
        SequenceConfig(spectral_radius=0.5)
    with pytest.raises(UserError, match="`leak_rate` must be in"):
        SequenceConfig(architecture="esn", leak_rate=0)


def test_an_echo_state_network_on_gunpoint_trains_in_seconds_and_ships(gunpoint, tmp_path, capsys):
    """Real series: 50 training series of 150 steps, 150 test. The reservoir beats
    1-nearest-neighbour (0.9067 on this split); the saved model predicts what was tested."""
    out = tmp_path / "esn"
    argv = ["train", "series", "--data", str(gunpoint), "--model", "esn", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Reservoir readout: ridge" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] > metrics["baselines"]["nearest_neighbour"] + 0.03
    trained = elman.load(out)
    test = gunpoint.with_name("GunPoint_TEST.txt")
    rows = np.loadtxt(test)
    predictions = trained.predict(rows[:, 1:, None].astype(np.float32))
    labels = [str(int(label)) for label in rows[:, 0]]
    accuracy = np.mean([p.label == label for p, label in zip(predictions, labels, strict=True)])
    assert accuracy == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert main(["evaluate", "--model", str(out), "--data", str(test)]) == 0
    assert f"{metrics['test_acc']:.4f}" in capsys.readouterr().out
    # The reservoir is the one drawn from the seed: only the readout was fitted.
    torch.manual_seed(0)
    drawn = CELLS["esn"].build(trained.config.model, 1, True)
    torch.testing.assert_close(trained.model.rnn.rnn.A, drawn.rnn.A, rtol=0, atol=0)


def test_an_echo_state_network_forecasts_gunpoint(gunpoint, tmp_path):
    """Each step's state -> the next value, by ridge regression over all the training steps:
    better than repeating the last value on the 22,350 test values."""
    out = tmp_path / "forecast"
    argv = ["train", "series", "--data", str(gunpoint), "--model", "esn", "--task", "forecast"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())["report"]
    assert report["model_mae"] < 0.8 * report["last_value_mae"]
    series = np.loadtxt(gunpoint)[:3, 1:, None].astype(np.float32)
    following = elman.load(out).forecast(series[:, :-1])  # each one's value at step 150
    assert np.abs(following - series[:, -1]).max() < 0.1
