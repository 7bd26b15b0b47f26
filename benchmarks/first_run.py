"""The first minute: ``elman train imdb`` as a fresh install runs it (no compiled kernels on disk,
no encoded arrays in the cache), then again warm.

    python benchmarks/first_run.py --data ../shared/data/aclImdb.tar.gz [--repeats 3]

A cold run deletes numba's compiled kernels of this checkout's ``elman`` (the ``*.nbi``/``*.nbc``
files beside its modules: they are compiled again by the run) and gives the run an empty
``ELMAN_CACHE``. Each run is a new process, timed from its start to its exit. Prints the wall
seconds of each run and the test accuracy it printed, as Markdown.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


def forget_compiled() -> int:
    """Delete the compiled kernels numba cached for ``elman``; how many files went."""
    import elman

    files = [p for p in Path(elman.__file__).parent.rglob("*.nb[ic]") if p.parent.name]
    for path in files:
        path.unlink()
    return len(files)


def timed_run(data: str, cache: str) -> tuple[float, str]:
    """One ``elman train imdb`` in a new process: its wall seconds and its test accuracy."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "elman", "train", "imdb", "--data", data, "--out", out]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--overwrite", "--no-progress"],
            env={**os.environ, "ELMAN_CACHE": cache},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"elman train imdb failed: {done.stderr.strip()[-500:]}")
    found = re.search(r"acc[^0-9]*([0-9.]+)", done.stdout.split("Test", 1)[-1])
    return seconds, found.group(1) if found else "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the aclImdb archive")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs (then one warm)")
    args = parser.parse_args(argv)
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            removed = forget_compiled()
            seconds, accuracy = timed_run(args.data, cache)
            name = f"cold {repeat + 1} ({removed} compiled files deleted)"
            rows.append((name, seconds, accuracy))
            print(f"cold: {seconds:.1f} s", file=sys.stderr)
            if repeat == args.repeats - 1:
                seconds, accuracy = timed_run(args.data, cache)
                rows.append(("warm (kernels and encoded arrays cached)", seconds, accuracy))
    print(provenance() + "\n")
    print("`elman train imdb --data ARCHIVE --overwrite`, a new process each:\n")
    print("| run | wall | test acc |\n|---|---:|---:|")
    for name, seconds, accuracy in rows:
        print(f"| {name} | {seconds:.1f} s | {accuracy} |")


if __name__ == "__main__":
    main()
