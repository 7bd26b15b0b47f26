"""The run's workflow: what a first run compiles ahead, in other processes."""

import os
from pathlib import Path

from elman.workflow import compiled_on_disk


def test_kernels_count_as_compiled_only_after_their_module_last_changed(tmp_path: Path):
    source = tmp_path / "ids.py"
    source.write_text("# kernels\n")
    assert not compiled_on_disk(source)  # never compiled: a first run compiles ahead
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    index = cache / "ids._read_rows-53.py311.nbi"
    index.write_bytes(b"")
    os.utime(source, (1_000, 1_000))
    os.utime(index, (2_000, 2_000))
    assert compiled_on_disk(source)
    os.utime(source, (3_000, 3_000))  # edited or upgraded since: numba compiles it again
    assert not compiled_on_disk(source)
    (cache / "other._loop-1.py311.nbi").write_bytes(b"")  # another module's index: not ids'
    assert not compiled_on_disk(source)
