"""The first minute: ``elman train imdb`` as a fresh install runs it (no compiled kernels on disk,
no encoded arrays in the cache), then again warm; optionally side by side with another checkout.

    python benchmarks/first_run.py --data ../shared/data/aclImdb.tar.gz [--repeats 3]
    python benchmarks/first_run.py --data ... --against ../old/src   # interleaved, this first

A cold run deletes numba's compiled kernels of the ``elman`` it runs (the ``*.nbi``/``*.nbc``
files beside its modules: they are compiled again by the run) and gives the run an empty
``ELMAN_CACHE``. Each run is a new process, timed from its start to its exit. With
``--against``, each repeat runs this checkout and then the other (its ``src`` folder, put first
on ``PYTHONPATH``), so that a slow spell of a shared machine hits both alike. Prints the wall
seconds of each run and the test accuracy it printed, as Markdown.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import checkouts, commit, provenance, running  # noqa: E402

WARM = "warm (kernels and encoded arrays cached)"


def forget_compiled(source: Path) -> int:
    """Delete the compiled kernels numba cached for the ``elman`` in ``source``; how many went."""
    files = list((source / "elman").rglob("*.nb[ic]"))
    for path in files:
        path.unlink()
    return len(files)


def timed_run(data: str, cache: str, source: Path) -> tuple[float, str]:
    """One ``elman train imdb`` of the ``elman`` in ``source``, in a new process: its wall
    seconds and its test accuracy."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "elman", "train", "imdb", "--data", data, "--out", out]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--overwrite", "--no-progress"],
            env={**running(source), "ELMAN_CACHE": cache},
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
    parser.add_argument("--against", type=Path, help="another checkout's src folder, to compare")
    args = parser.parse_args(argv)
    sources = checkouts(args.against)
    rows: dict[str, list[tuple[str, float, str]]] = {name: [] for name in sources}
    for repeat in range(args.repeats):
        for name, source in sources.items():
            with tempfile.TemporaryDirectory() as cache:
                removed = forget_compiled(source)
                seconds, accuracy = timed_run(args.data, cache, source)
                run = f"cold {repeat + 1} ({removed} compiled files deleted)"
                rows[name].append((run, seconds, accuracy))
                print(f"{name}: cold {seconds:.1f} s", file=sys.stderr)
                if repeat == args.repeats - 1:
                    seconds, accuracy = timed_run(args.data, cache, source)
                    rows[name].append((WARM, seconds, accuracy))
    print(provenance() + "\n")
    print("`elman train imdb --data ARCHIVE --overwrite`, a new process each:\n")
    if args.against:
        against = commit(args.against.parent)  # (the checkout holding that src folder)
        print(f"(against: `{args.against}`, commit {against}; runs interleaved)\n")
        print("| run | this: wall | test acc | against: wall | test acc |")
        print("|---|---:|---:|---:|---:|")
        for this, other in zip(rows["this"], rows["against"], strict=True):
            print(f"| {this[0]} | {this[1]:.1f} s | {this[2]} | {other[1]:.1f} s | {other[2]} |")
    else:
        print("| run | wall | test acc |\n|---|---:|---:|")
        for run, seconds, accuracy in rows["this"]:
            print(f"| {run} | {seconds:.1f} s | {accuracy} |")
    medians = {
        name: statistics.median(seconds for run, seconds, _ in runs if run != WARM)
        for name, runs in rows.items()
    }
    print("\nMedian cold run: " + ", ".join(f"{n} {s:.1f} s" for n, s in medians.items()))


if __name__ == "__main__":
    main()
