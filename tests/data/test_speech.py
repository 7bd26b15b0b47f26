"""Speech on the real Free Spoken Digit Dataset: features, conversions, training, predict."""

import io
import json
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import soundfile

from conftest import run_elman
from elman.data.speech import SpeechConfig, features, label_of, load_speech, read_wav
from elman.errors import UserError

FSDD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fsdd.tar.gz"
FSDD_TEST = r"_[0-4]\.wav$"  # the dataset's own test split: recordings 0-4 of every speaker


@pytest.fixture(scope="session")
def fsdd() -> Path:
    """The real recordings. Without them the speech tests are skipped, saying why, except
    under CI (``CI`` set), where a missing dataset is a failure."""
    if not FSDD.exists():
        message = f"the Free Spoken Digit Dataset is expected at {FSDD} (see shared/data)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return FSDD.resolve()


@pytest.fixture(scope="session")
def recording(fsdd) -> bytes:
    """One real recording: a speaker saying "7"."""
    with tarfile.open(fsdd) as archive:
        return archive.extractfile("fsdd/recordings/7_jackson_3.wav").read()


def test_real_recording_features(recording):
    notes: set[str] = set()
    samples, rate = read_wav(recording, "7_jackson_3.wav", None, notes)
    assert rate == 8000 and samples.ndim == 1 and not notes
    mfcc = features(samples, rate, SpeechConfig(features="mfcc", hop_ms=10))
    logmel = features(samples, rate, SpeechConfig(features="logmel", hop_ms=10))
    frames = 1 + (len(samples) - 256) // 80  # 32 ms FFT (25 ms window), a frame every 10 ms
    assert mfcc.shape == (frames, 13) and logmel.shape == (frames, 40)
    assert np.isfinite(mfcc).all()


def test_stereo_and_other_rates_are_converted(recording):
    samples, rate = soundfile.read(io.BytesIO(recording), dtype="float32")
    stereo, resampled = io.BytesIO(), io.BytesIO()
    soundfile.write(stereo, np.stack([samples, samples], 1), rate, format="WAV")
    soundfile.write(resampled, np.repeat(samples, 2), 2 * rate, format="WAV")
    notes: set[str] = set()
    mono, _ = read_wav(recording, "mono", 8000, notes)
    from_stereo, _ = read_wav(stereo.getvalue(), "stereo.wav", 8000, notes)
    from_16k, rate_read = read_wav(resampled.getvalue(), "16k.wav", 8000, notes)
    np.testing.assert_array_equal(from_stereo, mono)
    assert rate_read == 8000 and abs(len(from_16k) - len(mono)) <= 1
    assert any("averaged to mono" in note for note in notes)
    assert any("resampled to 8000 Hz" in note for note in notes)


def test_a_recording_of_nan_samples_is_refused():
    samples = np.zeros(800, dtype=np.float32)
    samples[100] = np.nan  # (a float WAV can hold it)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 8000, format="WAV", subtype="FLOAT")
    with pytest.raises(UserError, match="holds NaN or infinite samples"):
        read_wav(buffer.getvalue(), "the recording", None, set())


def test_unreadable_wav_and_labels(tmp_path):
    with pytest.raises(UserError, match="broken.wav is not a readable WAV file"):
        read_wav(b"RIFF....WAVEfmt nonsense", "broken.wav", None, set())
    assert label_of(PurePosixPath("recordings/7_jackson_32.wav"), by_folder=False) == "7"
    assert label_of(PurePosixPath("yes/0a7c2a8d_nohash_0.wav"), by_folder=True) == "yes"
    (tmp_path / "only").mkdir()
    with pytest.raises(UserError, match="holds no .wav files"):
        load_speech(SpeechConfig(data=str(tmp_path / "only")), seed=0)


@pytest.mark.slow
def test_fsdd_trains_and_predicts_digits(tmp_path, fsdd, recording):
    """A simple RNN on real spoken digits, then ``elman predict file.wav`` prints the digit."""
    out = tmp_path / "model"
    result = run_elman(
        "train", "speech", "--data", str(fsdd), "--test-pattern", FSDD_TEST, "--model", "rnn",
        "--epochs", "12",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.6, metrics  # 10 classes: chance is 0.1
    assert np.array(metrics["report"]["confusion_matrix"]).sum() == 300
    # Beside it, the baselines on the same split: 30 recordings a digit, 1-NN 0.92 here.
    assert metrics["baselines"]["majority"] == 0.1
    assert metrics["baselines"]["nearest_neighbour"] > 0.8
    assert "Baselines on the same test samples: majority class 0.1000" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == [str(d) for d in range(10)]
    assert config["data"]["sample_rate"] == 8000
    wav = tmp_path / "7_jackson_3.wav"
    wav.write_bytes(recording)
    samples, rate = soundfile.read(wav, dtype="float32")
    stereo_16k = tmp_path / "stereo.wav"
    soundfile.write(stereo_16k, np.stack([np.repeat(samples, 2)] * 2, 1), 2 * rate)
    predicted = run_elman("predict", "--model", str(out), "--json", str(wav), str(stereo_16k))
    assert predicted.returncode == 0, predicted.stderr
    labels = [record["label"] for record in json.loads(predicted.stdout)]
    assert labels[0] in [str(d) for d in range(10)]
    assert "resampled to 8000 Hz" in predicted.stderr and "averaged to mono" in predicted.stderr
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    refused = run_elman("predict", "--model", str(out), str(broken))
    assert refused.returncode == 1 and "is not a readable WAV file" in refused.stderr
