"""Speech: WAV files -> log-mel or MFCC frames, one RNN step per frame.

Path of the data, top to bottom:
1. ``wav_files``: the .wav files of a folder or .tar.gz, each labelled by its subfolder or, when
   they all lie in one folder, by its name's prefix (``7_jackson_32.wav`` -> ``7``, the Free
   Spoken Digit Dataset's convention).
2. ``read_wav``: samples as float32 mono at the model's rate. Stereo is averaged to mono and
   another sample rate resampled (both said once), so any WAV a user has is read as training was.
3. ``features``: log-mel energies or MFCCs with librosa, (frames, n) per recording.
4. ``load_speech``: test by ``--test-pattern`` (FSDD: ``_[0-4]\\.wav$``), a test/ folder or a
   seeded split; then as for any numeric sequences (``elman.data.series.numeric_splits``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from elman.data.series import (
    NumericData,
    Raw,
    labelled_split,
    numeric_splits,
    pad_with_nan,
    splits_of,
)
from elman.data.source import Encoding, Fitted, Given, Inputs, Log, Source, Splits, given_paths
from elman.data.split import Split, files_in, split_rows
from elman.errors import UserError
from elman.settings import setting


@dataclass
class SpeechConfig:
    data: str = setting("", "folder or .tar.gz of .wav files")
    test: str | None = setting(None, "a folder of test recordings")
    test_pattern: str | None = setting(
        None,
        "files whose name matches this regular expression are the test set "
        "(FSDD: '_[0-4]\\.wav$'; none: a seeded split)",
    )
    features: str = setting(
        "logmel", "log-mel energies or MFCCs per frame", choices=("logmel", "mfcc")
    )
    n_mfcc: int = setting(13, "MFCCs per frame")
    n_mels: int = setting(40, "mel bands")
    sample_rate: int | None = setting(
        None, "the rate recordings are read at (none: the training recordings' own)", cli=False
    )
    frame_ms: float = setting(25.0, "analysis window, ms")
    hop_ms: float = setting(20.0, "one frame (one RNN step) every hop-ms ms")
    val_size: float = setting(
        0.2, "training samples held out for validation: a fraction < 1 or a count"
    )
    test_size: float = setting(
        0.2, "without test data, samples held out for testing: a fraction < 1 or a count"
    )

    @property
    def input_size(self) -> int:
        return self.n_mfcc if self.features == "mfcc" else self.n_mels


# 1. Files ----------------------------------------------------------------------------------


def wav_files(path: Path) -> dict[PurePosixPath, bytes]:
    """Every .wav file of a folder or a .tar.gz, by its path inside it."""
    if not path.exists():
        raise UserError(f"speech data not found at {path}: give a folder or .tar.gz of WAV files")
    return files_in(path, ".wav")


def label_of(name: PurePosixPath, by_folder: bool) -> str:
    """The subfolder's name, or the file name up to its first ``_`` or ``-``."""
    return name.parent.name if by_folder else re.split(r"[_-]", name.stem, maxsplit=1)[0]


# 2. Samples ----------------------------------------------------------------------------------


def read_wav(
    data: bytes, where: str, sample_rate: int | None, notes: set[str]
) -> tuple[np.ndarray, int]:
    """Mono float32 samples at ``sample_rate`` (or the file's own rate when None), and the rate."""
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError) as error:
        reason = str(error).split(": ", 1)[-1] if "Error opening" in str(error) else str(error)
        raise UserError(
            f"{where} is not a readable WAV file ({reason.strip().rstrip('.')}): give a WAV "
            "recording"
        ) from None
    if len(samples) == 0:
        raise UserError(f"{where} holds no audio")
    if not np.isfinite(samples).all():  # (a float WAV can hold them; features would be NaN)
        raise UserError(f"{where} holds NaN or infinite samples: give a valid recording")
    if samples.shape[1] > 1:
        notes.add(f"{samples.shape[1]}-channel recordings (e.g. {where}) are averaged to mono")
    samples = samples.mean(axis=1)
    if sample_rate is not None and rate != sample_rate:
        import librosa

        notes.add(f"recordings at {rate} Hz (e.g. {where}) are resampled to {sample_rate} Hz")
        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate)
        rate = sample_rate
    return samples.astype(np.float32), rate


# 3. Features ---------------------------------------------------------------------------------


def features(samples: np.ndarray, sample_rate: int, config: SpeechConfig) -> np.ndarray:
    """(frames, n_mfcc or n_mels) float32: a frame every ``hop_ms`` over a ``frame_ms`` window."""
    import librosa

    window = int(round(sample_rate * config.frame_ms / 1000))
    hop = int(round(sample_rate * config.hop_ms / 1000))
    n_fft = 1 << (window - 1).bit_length()  # the next power of two
    if len(samples) < n_fft:  # a very short recording still gives one frame
        samples = np.pad(samples, (0, n_fft - len(samples)))
    mel = librosa.feature.melspectrogram(
        y=samples,
        sr=sample_rate,
        n_fft=n_fft,
        win_length=window,
        hop_length=hop,
        n_mels=config.n_mels,
        center=False,
    )
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10)
    if config.features == "logmel":
        return log_mel.T.astype(np.float32)
    return librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc).T.astype(np.float32)


def recordings_to_raw(
    files: dict[PurePosixPath, bytes],
    source: str,
    config: SpeechConfig,
    sample_rate: int | None,
    notes: set[str],
) -> tuple[Raw, int]:
    """Features (N, frames, n) with NaN after each recording's end, labels, and the rate used."""
    by_folder = len({name.parent for name in files}) > 1
    rows, labels, where = [], [], []
    for name in sorted(files, key=str):
        place = f"{source}/{name}"
        samples, sample_rate = read_wav(files[name], place, sample_rate, notes)
        rows.append(features(samples, sample_rate, config))
        labels.append(label_of(name, by_folder))
        where.append(place)
    return Raw(pad_with_nan(rows), labels, where), sample_rate


def check(config: SpeechConfig) -> None:
    if config.features not in ("mfcc", "logmel"):
        raise UserError(f"features must be mfcc or logmel, got {config.features!r}")
    if min(config.n_mfcc, config.n_mels) <= 0 or config.frame_ms <= 0 or config.hop_ms <= 0:
        raise UserError("n-mfcc, n-mels, frame-ms and hop-ms must be positive")


# 4. Arrays for training ------------------------------------------------------------------------


def load_speech(config: SpeechConfig, *, seed: int, log: Log = print) -> tuple[NumericData, int]:
    """Train/validation/test features and labels, and the sample rate the model reads."""
    check(config)
    if not config.data:
        raise UserError("no speech data: give `data` PATH (a folder or .tar.gz of WAV files)")
    files = wav_files(Path(config.data))
    if not files:
        raise UserError(f"{config.data} holds no .wav files")
    if config.test:
        test_files = wav_files(Path(config.test))
    elif config.test_pattern:
        pattern = re.compile(config.test_pattern)
        test_files = {name: data for name, data in files.items() if pattern.search(name.name)}
        files = {name: data for name, data in files.items() if name not in test_files}
        if not test_files or not files:
            raise UserError(
                f"`test_pattern` {config.test_pattern!r} matches {len(test_files)} of "
                f"{len(files) + len(test_files)} files: it must leave some on both sides"
            )
    else:
        names = sorted(files, key=str)
        kept, held = split_rows(len(names), config.test_size, seed, "test-size")
        test_files = {names[i]: files[names[i]] for i in held}
        files = {names[i]: files[names[i]] for i in kept}
    notes: set[str] = set()
    train, sample_rate = recordings_to_raw(files, config.data, config, config.sample_rate, notes)
    test, _ = recordings_to_raw(test_files, config.test or config.data, config, sample_rate, notes)
    for note in sorted(notes):
        log(f"note: {note}")
    return numeric_splits(train, test, "classify", config.val_size, seed), sample_rate


# 5. The source: what elman train/evaluate/predict call ------------------------------------------


def read(settings: SpeechConfig, encoding: Encoding, log: Log = print) -> Splits:
    numbers, sample_rate = load_speech(settings, seed=encoding.seed, log=log)
    return splits_of(numbers, sample_rate=sample_rate)


def features_of_files(paths: list[Path], config: SpeechConfig, notes: set[str]) -> np.ndarray:
    """WAV files -> features (N, frames, n) as in training (mono, at the model's rate)."""
    rows = []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"{path} is not a file: give WAV files to predict")
        samples, rate = read_wav(Path(path).read_bytes(), str(path), config.sample_rate, notes)
        rows.append(features(samples, rate, config))
    return pad_with_nan(rows)


def _logged(notes: set[str], log: Log) -> None:
    for note in sorted(notes):
        log(f"note: {note}")


def evaluation(fitted: Fitted, path: Path | None, log: Log = print) -> Split:
    """Every recording of ``path`` (labelled as in training), or the run's own test split."""
    settings = fitted.settings
    if path is None:
        return read(settings, fitted.encoding, log).test
    notes: set[str] = set()
    raw, _ = recordings_to_raw(wav_files(path), str(path), settings, settings.sample_rate, notes)
    _logged(notes, log)
    return labelled_split(raw, fitted.learned.classes)


def inputs(fitted: Fitted, given: Given, log: Log = print) -> Inputs:
    """WAV files given as arguments, with --file or in --folder, as the model hears them."""
    paths = given_paths(given, ".wav", "WAV files (or `folder` DIR)")
    notes: set[str] = set()
    x = features_of_files(paths, fitted.settings, notes)
    _logged(notes, log)
    return Inputs(x, [str(p) for p in paths], [str(p) for p in paths])


def upload(fitted: Fitted, body: bytes) -> np.ndarray:
    """A recording's bytes (a WAV file) -> its features (1, frames, n), as in training."""
    config = fitted.settings
    samples, rate = read_wav(body, "the recording", config.sample_rate, set())
    return pad_with_nan([features(samples, rate, config)])


SOURCE = Source(
    name="speech",
    config=SpeechConfig,
    network="numbers",
    read=read,
    evaluation=evaluation,
    inputs=inputs,
    upload=upload,
    # the echo-state network by default, as for series (README, "How recipes are chosen");
    # --model rnn: 128 units, 100 epochs at most; --preset best: the best on FSDD's validation
    preset={
        "model": {"architecture": "esn", "hidden_size": 128},
        "train": {"epochs": 100, "patience": 10},
    },
    recipes={
        "best": {"model": {"architecture": "rnn", "bidirectional": True, "pooling": "max+mean"}}
    },  # fmt: skip
    recipe_help={
        "reference": "the echo-state network (--model esn)",
        "best": "the simple RNN trained by gradient descent, reading both ways, max and mean "
        "pooling of its states (the best on FSDD's validation recordings)",
    },
    fixed={"task": "classify"},
    help="spoken words: WAV files labelled by file-name prefix or folder",
    description="Classify recordings from a folder (or .tar.gz) of WAV files, labelled by their "
    "subfolder or, all in one folder, by the file name's prefix (7_jackson_32.wav: 7). Features "
    "are log-mel or MFCC frames (librosa), one RNN step per frame.",
)
