"""Crash-safe training: a run killed (SIGKILL) or interrupted (Ctrl-C) in the middle of an epoch
and resumed ends with the same bits as a run that was never stopped."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elman.errors import UserError
from elman.models import ModelConfig, ReviewClassifier
from elman.train import TrainConfig, fit

SMALL = [
    "--max-len",
    "150",
    "--vocab-size",
    "2000",
    "--hidden-size",
    "8",
    "--epochs",
    "3",
    "--patience",
    "-1",
    "--no-progress",
]


def _train_command(real_archive: Path, real_cache: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-u",
        "-m",
        "elman.cli",
        "train",
        "imdb",
        "--data",
        str(real_archive),
        "--cache-dir",
        str(real_cache),
        *args,
    ]


def _without_timings(folder: Path) -> tuple[list, dict]:
    history = json.loads((folder / "history.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    for record in history:
        del record["seconds"]
    for key in ("seconds_per_epoch", "total_seconds"):
        del metrics[key]
    return history, metrics


@pytest.fixture(scope="module")
def uninterrupted(real_archive, real_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(
        _train_command(real_archive, real_cache, *SMALL, "--out", str(out), "--overwrite"),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def _stop_in_epoch_two(command: list[str], how: signal.Signals) -> tuple[int, str]:
    """Start training, wait until epoch 1 is done, stop it a moment into epoch 2."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("Epoch 1/3"):
            time.sleep(0.4)
            process.send_signal(how)
            break
    output.append(process.stdout.read())
    return process.wait(timeout=120), "".join(output)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how,every", [(signal.SIGKILL, None), (signal.SIGKILL, 10), (signal.SIGINT, None)]
)
def test_stopped_and_resumed_run_equals_uninterrupted(
    how, every, uninterrupted, real_archive, real_cache, tmp_path
):
    out = tmp_path / "run"
    extra = ["--checkpoint-every", str(every)] if every else []
    code, output = _stop_in_epoch_two(
        _train_command(real_archive, real_cache, *SMALL, *extra, "--out", str(out)), how
    )
    assert "Epoch 2/3" not in output, "the signal came too late to land inside epoch 2"
    assert not (out / "weights.safetensors").exists()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
    if how == signal.SIGKILL and every:  # killed mid-epoch: the last checkpoint of the epoch
        assert code == -signal.SIGKILL
        assert checkpoint["epoch"] == 2 and checkpoint["step"] > 0
        assert checkpoint["step"] % every == 0
    elif how == signal.SIGKILL:  # epochs take less than a minute: the end of epoch 1
        assert code == -signal.SIGKILL
        assert (checkpoint["epoch"], checkpoint["step"]) == (2, 0)
    else:  # Ctrl-C: saved where it stopped, a clean exit with a one-line message
        assert code == 130 and "continue with --resume" in output and "Traceback" not in output
        assert checkpoint["epoch"] == 2 and checkpoint["step"] > 0
    resumed = subprocess.run(
        _train_command(real_archive, real_cache, "--resume", str(out), "--no-progress"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout
    assert (out / "weights.safetensors").read_bytes() == (
        uninterrupted / "weights.safetensors"
    ).read_bytes()
    assert _without_timings(out) == _without_timings(uninterrupted)


def test_output_folder_with_a_model_is_refused_unless_overwrite(
    uninterrupted, real_archive, real_cache
):
    before = (uninterrupted / "weights.safetensors").read_bytes()
    result = subprocess.run(
        _train_command(real_archive, real_cache, *SMALL, "--out", str(uninterrupted)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "already holds a model" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (uninterrupted / "weights.safetensors").read_bytes() == before


def test_resume_without_checkpoint_is_refused(tmp_path, real_archive, real_cache):
    result = subprocess.run(
        _train_command(real_archive, real_cache, "--resume", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "nothing to resume" in result.stderr


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(small_real, tmp_path):
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    checkpoint = tmp_path / "checkpoint.pt"
    calls = 0

    def poison(module, inputs, output):  # from its 26th call on, the dense layer yields NaN
        nonlocal calls
        calls += 1
        return output * float("nan") if calls > 25 else output

    model.dense.register_forward_hook(poison)
    # 20 training steps and 1 validation batch per epoch: call 26 is epoch 2, step 5.
    with pytest.raises(UserError, match=r"loss became nan at epoch 2, step 5.*`clip_norm`"):
        fit(
            model,
            *small_real,
            TrainConfig(epochs=3),
            log=lambda _: None,
            progress=False,
            checkpoint=checkpoint,
        )
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["state"]["epoch"], saved["state"]["step"]) == (2, 0)
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_clip_norm_bounds_the_update(small_real):
    def weight_change(clip_norm):
        torch.manual_seed(0)
        model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
        before = model.rnn.A.detach().clone()
        fit(
            model,
            *small_real,
            TrainConfig(epochs=1, clip_norm=clip_norm, patience=None),
            log=lambda _: None,
            progress=False,
        )
        return (model.rnn.A.detach() - before).abs().max().item()

    # RMSprop divides by sqrt(v + 1e-7): gradients clipped far below sqrt(1e-7) barely move.
    assert weight_change(None) > 1e-2
    assert weight_change(1e-7) < 1e-3
