import hashlib
import io
import tarfile
from pathlib import Path

import pytest

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
