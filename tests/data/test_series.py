"""Numeric series: UCR text files, CSV, NumPy; missing values, unequal lengths, forecasting."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import run_elman
from elman.data.series import SeriesConfig, load_series, read_series
from elman.errors import UserError
from elman.kernels.reference import reference_rnn
from elman.models import SequenceConfig, SequenceModel


def shapes(n: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a sine wave; class 1: a square wave; random phase, amplitude and noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, steps)
    labels = rng.integers(0, 2, n)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(t + phase)
    values = np.where(labels[:, None] == 1, np.sign(wave), wave) * rng.uniform(0.5, 2, (n, 1))
    return values + rng.normal(0, 0.1, values.shape), labels


def write_ucr(path, values, labels, separator="\t", label_names=("1", "2")) -> None:
    lines = []
    for row, label in zip(values, labels, strict=True):
        fields = [label_names[label]] + ["NaN" if np.isnan(v) else f"{v:.6f}" for v in row]
        lines.append(separator.join(fields))
    path.write_text("\n".join(lines) + "\n")


def test_ucr_formats_read_the_same_values(tmp_path):
    values, labels = shapes(6, 20, 0)
    values[1, 3] = np.nan  # a missing value
    read = []
    for name, separator in (("a.tsv", "\t"), ("b.csv", ","), ("c.txt", "  ")):
        write_ucr(tmp_path / name, values, labels, separator)
        read.append(read_series(tmp_path / name, SeriesConfig()))
    for raw in read:
        assert raw.values.shape == (6, 20, 1)
        np.testing.assert_allclose(raw.values[..., 0], values, atol=1e-6)
        assert raw.labels == [("1", "2")[label] for label in labels]
    # Old UCR files write labels as floats; "2.0000000e+00" is the class "2".
    (tmp_path / "old.txt").write_text(
        "   2.0000000e+00  -6.4e-01  -6.3e-01\n   1.0e+00  1.0  2.0\n"
    )
    assert read_series(tmp_path / "old.txt", SeriesConfig()).labels == ["2", "1"]


def test_csv_with_header_and_ragged_rows(tmp_path):
    """A header names the label column; shorter rows are shorter series (NaN after their end)."""
    (tmp_path / "s.csv").write_text("t1,t2,t3,kind\n1,2,3,up\n3,2,,down\n5,6,7,up\n")
    raw = read_series(tmp_path / "s.csv", SeriesConfig(label_column="kind"))
    assert raw.labels == ["up", "down", "up"]
    assert np.isnan(raw.values[1, 2, 0]) and raw.values[1, 1, 0] == 2
    # A column named "class" is the label without being told; no header: the first column.
    (tmp_path / "h.csv").write_text("t1,class,t2\n1,up,2\n3,down,4\n")
    assert read_series(tmp_path / "h.csv", SeriesConfig()).labels == ["up", "down"]
    (tmp_path / "n.csv").write_text("up,1,2\ndown,3,4\n")
    raw = read_series(tmp_path / "n.csv", SeriesConfig())
    assert raw.labels == ["up", "down"] and raw.values[1, 1, 0] == 4


def test_quoted_numbers_and_a_byte_order_mark_read_as_numbers(tmp_path):
    """What spreadsheet programs write: quoted fields, a BOM before the header."""
    (tmp_path / "q.csv").write_bytes(b'\xef\xbb\xbft1,t2,kind\n"1.5","2",up\n"3","1,5",down\n')
    refused = pytest.raises(UserError, match="'1,5' is not a number")
    with refused:  # (a decimal comma inside quotes is one field, and not a number)
        read_series(tmp_path / "q.csv", SeriesConfig(label_column="kind"))
    (tmp_path / "q.csv").write_bytes(b'\xef\xbb\xbft1,t2,kind\n"1.5","2",up\n"3","4",down\n')
    raw = read_series(tmp_path / "q.csv", SeriesConfig(label_column="kind"))
    assert raw.labels == ["up", "down"]
    np.testing.assert_array_equal(raw.values[..., 0], [[1.5, 2.0], [3.0, 4.0]])


def test_non_numeric_value_is_one_line(tmp_path):
    (tmp_path / "X_TRAIN.tsv").write_text("1\t0.5\t0.7\n2\t0.1\tabc\n")
    result = run_elman("train", "series", "--data", str(tmp_path / "X_TRAIN.tsv"))
    assert result.returncode == 1
    assert "X_TRAIN.tsv line 2 field 3: 'abc' is not a number" in result.stderr  # as in the file
    assert len(result.stderr.strip().splitlines()) == 1


def test_npz_and_npy_with_features(tmp_path):
    values = np.random.default_rng(0).normal(size=(10, 7, 3))
    labels = np.arange(10) % 2
    np.savez(tmp_path / "d.npz", x=values, y=labels)
    np.save(tmp_path / "x.npy", values)
    np.save(tmp_path / "y.npy", labels)
    a = read_series(tmp_path / "d.npz", SeriesConfig())
    b = read_series(tmp_path / "x.npy", SeriesConfig(labels=str(tmp_path / "y.npy")))
    assert a.values.shape == (10, 7, 3) and a.labels == b.labels == [str(v) for v in labels]
    with pytest.raises(UserError, match="x.npy has no labels: classification needs them"):
        load_series(SeriesConfig(data=str(tmp_path / "x.npy")), task="classify", seed=0)


def test_missing_steps_are_skipped_like_a_mask():
    """NaN steps and NaN padding: the model equals the reference loop holding its state there."""
    torch.manual_seed(0)
    model = SequenceModel(SequenceConfig(input_size=2, hidden_size=5)).double()
    x = torch.randn(3, 8, 2, dtype=torch.float64)
    x[0, 2] = float("nan")  # a gap
    x[1, 5:] = float("nan")  # a shorter series
    x[2, 0, 1] = float("nan")  # one feature missing: the step counts as missing
    present = ~torch.isnan(x).any(-1)
    h0 = torch.zeros(3, 5, dtype=torch.float64)
    states = reference_rnn(torch.nan_to_num(x), model.rnn.A, model.rnn.b, h0, present, "tanh")
    expected = model.dense(states[:, -1]).squeeze(-1)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("architecture", ["lstm", "gru"])
def test_gated_models_read_only_present_steps(architecture):
    torch.manual_seed(0)
    model = SequenceModel(SequenceConfig(architecture, input_size=1, hidden_size=4), classes=3)
    x = torch.randn(2, 6, 1)
    x[0, 4:] = float("nan")
    alone = model(x[:1, :4])
    torch.testing.assert_close(model(x)[:1], alone)


@pytest.mark.slow
def test_series_classification_and_predict(tmp_path):
    """UCR files X_TRAIN/X_TEST: train, the saved model predicts, unknown labels refused."""
    train_values, train_labels = shapes(200, 40, 1)
    test_values, test_labels = shapes(60, 40, 2)
    train_values[::7, :5] = np.nan  # some series start later (unequal lengths)
    write_ucr(tmp_path / "Waves_TRAIN.tsv", train_values, train_labels)
    write_ucr(tmp_path / "Waves_TEST.tsv", test_values, test_labels)
    out = tmp_path / "model"
    result = run_elman(
        "train", "series", "--data", str(tmp_path), "--model", "rnn", "--epochs", "60",
        "--batch-size", "16",
        "--lr", "0.002", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    # Seeds 0-9 on the 2-core development machine: 0.98-1.00. (At lr 0.005 training was marginal:
    # seeds 0-7 gave 0.90-1.00 until a change in float summation order left seed 0 on the
    # plateau at 0.67; lr 0.01 gave 0.45-0.97.) Chance is 0.5: 0.7 leaves room for rounding.
    assert metrics["test_acc"] >= 0.7, metrics
    predicted = run_elman(
        "predict", "--model", str(out), "--json", str(tmp_path / "Waves_TEST.tsv")
    )
    labels = [record["label"] for record in json.loads(predicted.stdout)]
    truth = [("1", "2")[t] for t in test_labels]
    accuracy = np.mean([label == true for label, true in zip(labels, truth, strict=True)])
    assert accuracy == pytest.approx(metrics["test_acc"])
    write_ucr(tmp_path / "odd.tsv", test_values[:2], [0, 1], label_names=("1", "7"))
    refused = run_elman("predict", "--model", str(out), str(tmp_path / "odd.tsv"))
    assert (
        refused.returncode == 1 and "label '7' is not one of the model's classes" in refused.stderr
    )


@pytest.mark.slow
def test_forecast_beats_the_last_value(tmp_path):
    """One-step-ahead sine forecasts: the standardised model beats repeating the last value."""
    t = np.arange(60)
    rng = np.random.default_rng(0)
    values = 100 + 10 * np.sin(
        t[None, :] * rng.uniform(0.3, 0.6, (120, 1)) + rng.uniform(0, 6, (120, 1))
    )
    values[::5, 50:] = np.nan  # shorter series
    values[3, 10] = np.nan  # a gap
    np.save(tmp_path / "x.npy", values)
    out = tmp_path / "model"
    result = run_elman(
        "train", "series", "--data", str(tmp_path / "x.npy"), "--task", "forecast",
        "--model", "rnn", "--epochs", "60", "--batch-size", "16", "--lr", "0.005",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "metrics.json").read_text())["report"]
    assert report["model_mae"] < 0.5 * report["last_value_mae"], report
    assert "repeating the last value" in result.stdout
    numbers = load_series(SeriesConfig(data=str(tmp_path / "x.npy")), task="forecast", seed=0)
    assert numbers.mean[0] > 90
    predicted = run_elman("predict", "--model", str(out), str(tmp_path / "x.npy"))
    assert predicted.returncode == 0, predicted.stderr
    forecasts = [float(line.split("next value ")[1]) for line in predicted.stdout.splitlines()]
    assert len(forecasts) == 120 and all(85 < value < 115 for value in forecasts)


@pytest.mark.slow
def test_interrupted_series_run_resumes_to_the_same_bits(tmp_path):
    """Ctrl-C and --resume work for series as for IMDB: the weights of a run never stopped."""
    values, labels = shapes(600, 30, 3)
    write_ucr(tmp_path / "W_TRAIN.tsv", values, labels)
    write_ucr(tmp_path / "W_TEST.tsv", *shapes(50, 30, 4))
    train = [sys.executable, "-u", "-m", "elman.cli", "train", "series", "--model", "rnn"]
    train.append("--no-progress")
    settings = ["--data", str(tmp_path / "W_TRAIN.tsv"), "--epochs", "3", "--batch-size", "4"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    subprocess.run([*train, *settings, "--out", str(whole)], check=True, capture_output=True)
    process = subprocess.Popen(
        [*train, *settings, "--out", str(stopped)], stdout=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if line.startswith("Epoch 1/3"):
            process.send_signal(signal.SIGINT)
            break
    process.stdout.read()
    assert process.wait(timeout=120) == 130
    assert not (stopped / "weights.safetensors").exists()
    resumed = run_elman("train", "series", "--resume", str(stopped), "--no-progress")
    assert resumed.returncode == 0 and "Resuming from" in resumed.stdout
    assert (stopped / "weights.safetensors").read_bytes() == (
        whole / "weights.safetensors"
    ).read_bytes()
