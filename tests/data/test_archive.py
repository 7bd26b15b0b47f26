import gzip
import io
import tarfile
import zlib

import pytest

from elman.data.archive import _plain_members, archive_files


def tarfile_files(path, wanted) -> list[tuple[str, bytes]]:
    """The oracle: what Python's tarfile reads."""
    with tarfile.open(path, "r:*") as archive:
        return [
            (member.name, archive.extractfile(member).read())
            for member in archive
            if member.isfile() and wanted(member.name)
        ]


def write_archive(path, files: dict[str, bytes], format=tarfile.GNU_FORMAT, mode="w:gz"):
    with tarfile.open(path, mode, format=format) as tar:
        folder = tarfile.TarInfo("top")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


FILES = {
    "top/a.txt": b"first",
    "top/empty.txt": b"",
    "top/block.txt": b"x" * 512,  # exactly one block: no padding after it
    "top/b.bin": bytes(range(256)) * 3,
}


def test_the_real_imdb_archive_reads_as_tarfile_reads_it(real_archive):
    def wanted(name):
        return "/unsup/" not in name

    assert _plain_members(gzip.decompress(real_archive.read_bytes())) is not None  # the fast path
    ours = list(archive_files(real_archive, wanted))
    assert len(ours) == 50_008  # 4 × 12,500 reviews, 4 urls files, README, imdb.vocab, imdbEr
    assert ours == tarfile_files(real_archive, wanted)


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_each_header_format_reads_as_tarfile_reads_it(tmp_path, format):
    long_name = "top/" + "deep/" * 30 + "long.txt"  # GNU: a long-name member; pax: a pax header
    files = FILES | ({} if format == tarfile.USTAR_FORMAT else {long_name: b"far down"})
    archive = write_archive(tmp_path / "a.tar.gz", files, format)
    ours = list(archive_files(archive, lambda name: True))
    assert ours == tarfile_files(archive, lambda name: True)
    assert dict(ours) == files
    plain = _plain_members(gzip.decompress(archive.read_bytes()))
    assert (plain is not None) == (format == tarfile.USTAR_FORMAT)  # else tarfile read it


def test_an_uncompressed_tar_and_a_filter(tmp_path):
    archive = write_archive(tmp_path / "a.tar", FILES, mode="w")
    assert list(archive_files(archive, lambda name: name.endswith(".txt"))) == [
        (name, data) for name, data in FILES.items() if name.endswith(".txt")
    ]


@pytest.mark.parametrize("kept", [0.3, 0.6, 0.95])
def test_a_truncated_archive_raises(tmp_path, kept):
    data = write_archive(tmp_path / "a.tar.gz", FILES).read_bytes()
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises((OSError, EOFError, zlib.error, tarfile.TarError)):
        list(archive_files(truncated, lambda name: True))


def test_a_tar_cut_inside_its_gzip_is_refused_by_tarfile(tmp_path):
    tar = tmp_path / "a.tar"
    write_archive(tar, FILES, mode="w")
    cut = tmp_path / "cut.tar.gz"
    with tarfile.open(tar) as archive:
        inside = archive.getmember("top/b.bin").offset_data + 100
    cut.write_bytes(gzip.compress(tar.read_bytes()[:inside]))  # a whole gzip of a cut tar
    assert _plain_members(gzip.decompress(cut.read_bytes())) is None
    with pytest.raises(tarfile.TarError):
        list(archive_files(cut, lambda name: True))
