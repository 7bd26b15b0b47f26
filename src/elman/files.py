"""Writing files so that a crash or a kill never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename it over ``path``.

    A rename within one file system is atomic: readers see the old file or the new one, never
    a mix, whenever the process dies."""
    path = Path(path)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as file:
        try:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            os.unlink(file.name)
            raise
    os.chmod(file.name, 0o644)
    os.replace(file.name, path)


LOCK = ".elman.lock"


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the length of the block.

    A second process asking for it stops at once with a UserError naming the holder. The lock
    is the operating system's (``flock``): it goes when its process ends, however it ends, so a
    lock file left by a killed run is simply taken over."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take(descriptor, folder)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


def refuse_if_locked(folder: Path) -> None:
    """Raise ``locked_folder``'s error if another process holds ``folder``'s lock now (without
    creating anything)."""
    try:
        descriptor = os.open(Path(folder) / LOCK, os.O_RDWR)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        _take(descriptor, folder)
    finally:
        os.close(descriptor)


def _take(descriptor: int, folder: Path) -> None:
    """Lock the open lock file exclusively, or raise a UserError naming the process that holds
    it (its pid is the file's content)."""
    import fcntl

    from elman.errors import UserError

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 64).decode(errors="replace").strip() or "unknown"
        raise UserError(
            f"{folder} is in use by another elman run (process {holder}): wait for it to "
            "finish, or choose another `out_dir`"
        ) from None


def json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
