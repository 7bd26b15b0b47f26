"""The command line over a table of bad inputs: each gets a non-zero exit, one line that says what
is wrong (with the expected words), no traceback, and every file that existed before (saved
models, data) is byte-identical afterwards."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_elman, save_small_model, write_small_imdb
from elman.cli import main

# ---- what each case starts from -------------------------------------------------------------


def _model(root: Path) -> Path:
    """A saved 13-id text model (untrained), once per test."""
    folder = root / "model"
    if not folder.exists():
        save_small_model(folder)
    return folder


def _broken(root: Path, change: Callable[[Path], None]) -> Path:
    """A copy of the saved model with one thing changed."""
    folder = root / "broken"
    shutil.copytree(_model(root), folder)
    change(folder)
    return folder


def _config(**changes) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            part, _, name = key.partition("__")
            if name:
                config[part][name] = value
            else:
                config[part] = value
        (folder / "config.json").write_text(json.dumps(config))

    return change


def _config_text(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "config.json").write_text(text)


def _weights(transform) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        state = load_file(folder / "weights.safetensors")
        save_file({k: transform(v) for k, v in state.items()}, folder / "weights.safetensors")

    return change


def _vocabulary(words: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        lines = (folder / "vocabulary.txt").read_text().splitlines()
        (folder / "vocabulary.txt").write_text("\n".join(words(lines)) + "\n")

    return change


def _archive(root: Path) -> Path:
    (root / "imdb").mkdir(exist_ok=True)
    return write_small_imdb(root / "imdb")


def _file(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _imdb(root: Path, *args: str) -> list[str]:
    """``elman train imdb`` on the small archive, into a fresh folder, with ``args``."""
    data = _archive(root)
    return ["train", "imdb", "--data", str(data), "--cache-dir", str(root / "cache"), *args]


def _out(root: Path) -> list[str]:
    return ["--out", str(root / "out")]


def _series(root: Path, text: str) -> list[str]:
    return ["train", "series", "--data", str(_file(root, "s_TRAIN.txt", text)), *_out(root)]


def _jsonl(root: Path, label: str) -> list[str]:
    lines = [
        json.dumps({"text": "a fine film", "label": "good"}),
        f'{{"text": "bad", "label": {label}}}',
    ]
    path = _file(root, "t.jsonl", "\n".join(lines) + "\n")
    return ["train", "text", "--data", str(path), *_out(root)]


def _predict(root: Path, folder: Path, *args: str) -> list[str]:
    return ["predict", "--model", str(folder), *(args or ("a great film",))]


def _half_started(root: Path) -> Path:
    """A folder whose run stopped before its first checkpoint (its data: the small archive)."""
    folder = root / "half"
    folder.mkdir()
    shutil.copy(_model(root) / "config.json", folder / "config.json")
    _config(
        data__data=str(_archive(root)),
        data__cache_dir=str(root / "cache"),
        data__val_size=2,
        train__batch_size=2,
    )(folder)
    return folder


def _pickle_checkpoint(root: Path) -> Path:
    folder = _half_started(root)
    (folder / "checkpoint.pt").write_bytes(
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94"
        b"\x8c\x05touch\x94\x85\x94R\x94."
    )
    return folder


def _bad_sidecar(root: Path) -> list[str]:
    data = _archive(root)
    _file(root, f"imdb/{data.name}.sha256", "0" * 64 + f"  {data.name}\n")
    return ["train", "imdb", "--data", str(data), *_out(root)]


def _truncated(root: Path) -> list[str]:
    data = _archive(root)
    cut = _file(root, "cut/aclImdb.tar.gz", data.read_bytes()[:300])
    return ["train", "imdb", "--data", str(cut), "--cache-dir", str(root / "cache"), *_out(root)]


def _no_layout(root: Path) -> list[str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    path = _file(root, "other.tar.gz", buffer.getvalue())
    return ["train", "imdb", "--data", str(path), "--cache-dir", str(root / "cache"), *_out(root)]


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # training settings
    "epochs 0": (lambda r: _imdb(r, "--epochs", "0", *_out(r)), "must be positive"),
    "lr not a number": (lambda r: _imdb(r, "--lr", "abc", *_out(r)), "expected a number"),
    "patience not a number": (lambda r: _imdb(r, "--patience", "x", *_out(r)), "whole number"),
    "unknown model": (lambda r: _imdb(r, "--model", "transformer", *_out(r)), "invalid choice"),
    "unknown option": (lambda r: _imdb(r, "--speed", "9", *_out(r)), "unrecognized arguments"),
    "vocabulary of 3": (lambda r: _imdb(r, "--vocab-size", "3", *_out(r)), "3 reserved ids"),
    "val-size beyond data": (lambda r: _imdb(r, "--val-size", "10", *_out(r)), "val-size must"),
    "model too large for memory": (
        lambda r: _imdb(
            r, "--hidden-size", "1000000", "--val-size", "2", "--batch-size", "2", *_out(r)
        ),
        "GiB of memory",
    ),
    "summary too large for memory": (
        lambda r: ["summary", "--hidden-size", "1000000"],
        "GiB of memory",
    ),
    "lr inf": (
        lambda r: _imdb(
            r, "--lr", "inf", "--batch-size", "2", "--val-size", "2", "--no-progress", *_out(r)
        ),
        "the loss became nan at epoch 1, step 2; training stopped: lower --lr",
    ),
    # data
    "missing archive": (
        lambda r: ["train", "imdb", "--data", "/no/such.tar.gz", *_out(r)],
        "not found",
    ),
    "truncated archive": (_truncated, "truncated or corrupted"),
    "checksum mismatch": (_bad_sidecar, "does not match its checksum"),
    "archive without layout": (_no_layout, "lacks the aclImdb layout"),
    "series inf": (lambda r: _series(r, "1\t0.5\tinf\n2\t1\t2\n"), "'inf' is infinite"),
    "series overflow": (lambda r: _series(r, "1\t0.5\t1e308\n2\t1\t2\n"), "beyond float32's range"),
    "series text value": (lambda r: _series(r, "1\t0.5\tabc\n2\t1\t2\n"), "field 3: 'abc' is not"),
    "npy with inf": (
        lambda r: ["train", "series", "--data", str(_npy(r)), *_out(r)],
        "series 2 step 1 feature 1: inf is infinite",
    ),
    "jsonl null label": (lambda r: _jsonl(r, "null"), "label null is not a string"),
    "jsonl list label": (lambda r: _jsonl(r, "[1, 2]"), "label [1, 2] is not a string"),
    "jsonl float label": (lambda r: _jsonl(r, "1.5"), "label 1.5 is not a string"),
    "jsonl object label": (lambda r: _jsonl(r, '{"a": 1}'), 'label {"a": 1} is not a string'),
    "csv without the text column": (
        lambda r: [
            "train",
            "text",
            "--data",
            str(_file(r, "t.csv", "review,label\nx,a\n")),
            *_out(r),
        ],
        "has no column 'text'",
    ),
    "unknown text format": (
        lambda r: ["train", "text", "--data", str(_file(r, "t.xyz", "x")), *_out(r)],
        "unknown text format",
    ),
    "speech folder without wav": (
        lambda r: ["train", "speech", "--data", str(_file(r, "w/a.txt", "x").parent), *_out(r)],
        "holds no .wav files",
    ),
    # output folders
    "out is the filesystem root": (lambda r: _imdb(r, "--out", "/"), "filesystem root"),
    "out holds other files": (
        lambda r: _imdb(r, "--out", str(_file(r, "mine/notes.txt", "mine").parent)),
        "holds files elman did not write (notes.txt)",
    ),
    "out is a file": (lambda r: _imdb(r, "--out", str(_file(r, "afile", "x"))), "is a file"),
    "out inside a file": (
        lambda r: _imdb(r, "--out", str(_file(r, "afile", "x") / "run")),
        "cannot read or write",
    ),
    "out holds a model": (
        lambda r: _imdb(r, "--out", str(_model(r))),
        "already holds a model",
    ),
    "out half-started": (
        lambda r: _imdb(r, "--out", str(_half_started(r))),
        "stopped before its first checkpoint: --resume",
    ),
    "resume an empty folder": (lambda r: _imdb(r, "--resume", str(r)), "nothing to resume"),
    "resume a pickle": (
        lambda r: ["train", "imdb", "--resume", str(_pickle_checkpoint(r))],
        "is not a checkpoint elman wrote (refused to unpickle",
    ),
    # saved model folders
    "not a model folder": (lambda r: _predict(r, r / "nothing"), "not a saved elman model"),
    "config hidden_size a string": (
        lambda r: _predict(r, _broken(r, _config(model__hidden_size="32"))),
        'hidden_size must be int, got "32"',
    ),
    "config hidden_size a fraction": (
        lambda r: _predict(r, _broken(r, _config(model__hidden_size=32.5))),
        "hidden_size must be int, got 32.5",
    ),
    "config max_len a word": (
        lambda r: _predict(r, _broken(r, _config(model__max_len="abc"))),
        "max_len must be int",
    ),
    "config negative size": (
        lambda r: _predict(r, _broken(r, _config(model__embedding_dim=-4))),
        "embedding-dim must be positive",
    ),
    "config unknown key": (
        lambda r: _predict(r, _broken(r, _config(train__speed=3))),
        "'speed' is not a setting elman knows",
    ),
    "config a list": (lambda r: _predict(r, _broken(r, _config_text("[1, 2]"))), "JSON object"),
    "config not json": (lambda r: _predict(r, _broken(r, _config_text("{"))), "not valid JSON"),
    "config one class": (
        lambda r: _predict(r, _broken(r, _config(classes=["positive"]))),
        "two or more distinct names",
    ),
    "config unknown source": (
        lambda r: _predict(r, _broken(r, _config(source="video"))),
        'unknown source "video"',
    ),
    "weights int32": (
        lambda r: _predict(r, _broken(r, _weights(lambda t: t.to(torch.int32)))),
        "is int32, but elman saves float32",
    ),
    "weights float64": (
        lambda r: _predict(r, _broken(r, _weights(lambda t: t.double()))),
        "is float64, but elman saves float32",
    ),
    "weights NaN": (
        lambda r: _predict(r, _broken(r, _weights(lambda t: t * float("nan")))),
        "NaN or infinite values",
    ),
    "weights truncated": (
        lambda r: _predict(r, _broken(r, lambda f: _file(f, "weights.safetensors", b"\x08\x00"))),
        "is not readable safetensors",
    ),
    "vocabulary duplicated word": (
        lambda r: _predict(r, _broken(r, _vocabulary(lambda w: w[:-1] + [w[3]]))),
        "appears twice",
    ),
    "vocabulary blank line": (
        lambda r: _predict(r, _broken(r, _vocabulary(lambda w: w[:5] + [" "] + w[6:]))),
        "line 6 is blank",
    ),
    "vocabulary reordered": (
        lambda r: _predict(r, _broken(r, _vocabulary(lambda w: w[::-1]))),
        "does not start with the reserved ids",
    ),
    "vocabulary of another model": (
        lambda r: _predict(r, _broken(r, _vocabulary(lambda w: w[:4]))),
        "it has 4 words but the model has 13 ids",
    ),
    "vocabulary not UTF-8": (
        lambda r: _predict(r, _broken(r, lambda f: _file(f, "vocabulary.txt", b"<pad>\n\xff\n"))),
        "is not UTF-8",
    ),
    "language model as a classifier": (
        lambda r: _predict(r, _broken(r, _config_text('{"kind": "language model"}'))),
        "holds a language model",
    ),
    # what to predict
    "no review": (lambda r: ["predict", "--model", str(_model(r))], "no review to predict"),
    "review without words": (lambda r: _predict(r, _model(r), "!!! ???"), "has no words"),
    "review of unknown words": (lambda r: _predict(r, _model(r), "zorblax"), "no word in the"),
    "missing --file": (
        lambda r: _predict(r, _model(r), "--file", str(r / "none.txt")),
        "is not a file",
    ),
    "empty --folder": (
        lambda r: _predict(r, _model(r), "--folder", str(_file(r, "e/x.csv", "").parent)),
        "holds no .txt files",
    ),
    "missing language model": (
        lambda r: ["lm", "next", "the film", "--model", str(r / "nolm")],
        "not a saved language model",
    ),
}


# ---- runs and encoded folders (issue 25's third class) ------------------------------------


def _reviews_csv(root: Path, extra: str = "") -> Path:
    rows = ["text,label"] + [
        f"{'a fine warm film' if i % 2 else 'a dull bad film'} {i},{'good' if i % 2 else 'bad'}"
        for i in range(40)
    ]
    return _file(root, "reviews.csv", "\n".join(rows) + "\n" + extra)


def _text_run(root: Path, name: str = "run", *settings: str) -> Path:
    """A small text run trained to its end in ``root/name``."""
    out = root / name
    args = ["train", "text", "--data", str(_reviews_csv(root)), "--out", str(out)]
    tiny = ["--epochs", "1", "--max-len", "8", "--hidden-size", "3", "--batch-size", "8"]
    tiny += ["--no-progress"]
    assert main([*args, *tiny, *settings]) in (0, None)
    return out


def _stopped_run(root: Path) -> Path:
    """A run whose last checkpoint is saved but whose end was never reached (no metrics)."""
    out = _text_run(root)
    for name in ("metrics.json", "weights.safetensors"):
        (out / name).unlink()
    return out


def _resume(folder: Path, *args: str) -> list[str]:
    return ["train", "text", "--resume", str(folder), "--no-progress", *args]


def _changed_data(root: Path) -> Path:
    folder = _stopped_run(root)
    _reviews_csv(root, "a new review,good\n")  # the same file, one review more
    return folder


def _other_runs_checkpoint(root: Path) -> Path:
    folder = _stopped_run(root)
    other = _text_run(root, "other", "--seed", "7")
    shutil.copy(other / "checkpoint.pt", folder / "checkpoint.pt")
    return folder


def _encoded(root: Path, change: Callable[[Path, dict], None]) -> list[str]:
    """``train text --encoded`` on a folder written by ``elman encode``, then changed."""
    folder = root / "encoded"
    assert main(["encode", "text", "--data", str(_reviews_csv(root)), "--out", str(folder)]) in (
        0,
        None,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    change(folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ["train", "text", "--encoded", str(folder), *_out(root)]


def _shard_as(dtype) -> Callable[[Path, dict], None]:
    def change(folder: Path, manifest: dict) -> None:
        path = folder / "train-00000.x.npy"
        np.save(path, np.load(path).astype(dtype))
        part = manifest["train"][0]
        part["bytes"] = sum(
            (folder / f"train-00000.{a}.npy").stat().st_size for a in ("x", "y", "lengths")
        )

    return change


def _shard_named(name: str) -> Callable[[Path, dict], None]:
    return lambda folder, manifest: manifest["train"][0].update(name=name)


def _rows(count: int) -> Callable[[Path, dict], None]:
    return lambda folder, manifest: manifest["val"][0].update(rows=count)


CASES.update(
    {
        "resume with a setting changed": (
            lambda r: _resume(_stopped_run(r), "--epochs", "5"),
            "--epochs would be ignored",
        ),
        "resume a finished run": (lambda r: _resume(_text_run(r)), "has finished"),
        "resume on changed data": (lambda r: _resume(_changed_data(r)), "on other data"),
        "resume from another run's checkpoint": (
            lambda r: _resume(_other_runs_checkpoint(r)),
            "on other data or settings",
        ),
        "encoded shard name outside the folder": (
            lambda r: _encoded(r, _shard_named("../../outside")),
            "is not one elman encode writes",
        ),
        "encoded shard with an absolute path": (
            lambda r: _encoded(r, _shard_named("/etc/passwd")),
            "is not one elman encode writes",
        ),
        "more workers than cores": (
            lambda r: _imdb(r, "--nproc-per-node", str((os.cpu_count() or 1) + 1), *_out(r)),
            "starts more workers than this machine's",
        ),
        "serve on port 99999": (
            lambda r: ["serve", "--model", str(_model(r)), "--port", "99999"],
            "must be a port number from 0 to 65535",
        ),
        "serve on a negative port": (
            lambda r: ["serve", "--model", str(_model(r)), "--port", "-1"],
            "must be a port number",
        ),
        "encoded float64 shard": (
            lambda r: _encoded(r, _shard_as(np.float64)),
            "holds inputs of shape",
        ),
        "encoded row count not the manifest's": (
            lambda r: _encoded(r, _rows(3)),
            "where the manifest says 3",
        ),
    }
)


def _npy(root: Path) -> Path:
    values = np.array([[1.0, 2.0], [np.inf, 1.0]])
    np.save(root / "x.npy", values)
    np.save(root / "y.npy", np.array([0, 1]))
    return root / "x.npy"


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(case, tmp_path, capsys):
    setup, words = CASES[case]
    args = setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert words in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("elman"), err
    after = _snapshot(tmp_path)
    assert {path: after.get(path) for path in before} == before  # every file as it was
    if case not in STARTED:  # nothing written by a run that could not start
        added = {
            path.name
            for path in set(after) - set(before)
            if path.name != ".elman.lock" and (tmp_path / "cache") not in path.parents
        }  # (the encoded-data cache may fill: it is data, not a result)
        assert not added, added
        assert not (tmp_path / "out").exists()


if not torch.cuda.is_available():  # (on a GPU machine these are valid)
    CASES["device cuda without a GPU"] = (
        lambda r: _imdb(r, "--device", "cuda", *_out(r)),
        "--device cuda: this machine has no CUDA device",
    )

STARTED = {"lr inf"}  # runs that fail once training has begun (their config.json is written)


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_closed_standard_input(tmp_path):
    folder = _model(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "elman.cli", "predict", "--model", str(folder), "-"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: __import__("os").close(0),
    )
    assert result.returncode == 1 and "standard input is closed" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_second_run_on_the_same_folder_stops_at_once(tmp_path, real_archive, real_cache):
    """Two runs on one --out: the second stops at once naming the first; after the first
    ends (here: is killed), its lock is gone with it and a new run may take the folder."""
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "elman.cli", "train", "imdb", "--data", str(real_archive),
        "--cache-dir", str(real_cache), "--max-len", "40", "--vocab-size", "500",
        "--hidden-size", "4", "--epochs", "50", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:  # wait until it trains
            if line.startswith("Epoch 1/50"):
                break
        second = run_elman(*command[3:])
        assert second.returncode == 1
        assert f"in use by another elman run (process {first.pid})" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait(timeout=60)
    time.sleep(0.1)
    third = run_elman(*command[3:], "--epochs", "1", "--overwrite")  # the lock went with it
    assert third.returncode == 0, third.stderr


def test_read_only_output_folder(tmp_path):
    """A read-only file system (the lock is the first write): one line, nothing changed."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    try:
        result = run_elman("train", "imdb", "--data", "/no/such.tar.gz", "--out", str(folder))
        assert result.returncode == 1 and "Read-only file system" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    finally:
        subprocess.run(["umount", str(folder)])
