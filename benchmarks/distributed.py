"""Data-parallel scaling: reviews per second of IMDB training with 1, 2, 4, 8 workers.

Each row is one real job, started as a user starts it (``elman train imdb --nproc-per-node N``)
with the reference model and per-worker batch 32; the time is the first epoch's training time
as rank 0 measured it (``history.json``: steps only, no data loading, start-up or validation).
Workers each take their share of the cores (cores / workers threads, at least 1).

    python benchmarks/distributed.py --data ../shared/data/aclImdb.tar.gz
    python benchmarks/distributed.py --workers 1 2 4 8 16 --device cpu   # a bigger machine
    python benchmarks/distributed.py --workers 1 --device cuda           # one GPU
    python benchmarks/distributed.py --workers 2 -- --hidden-size 256 --batch-size 128

Printed: reviews/s, the speed-up over ONE worker on ONE core (``--threads 1``: the unit the
workers divide the machine into) and the efficiency (speed-up / cores used), plus one worker on
all cores, the way a single process trains. Compare rows of one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


def epoch_seconds(args: argparse.Namespace, workers: int, threads: int | None) -> float:
    """Seconds of the first epoch's training steps: the fastest of ``--rounds`` real jobs."""
    return min(one_job(args, workers, threads) for _ in range(args.rounds))


def one_job(args: argparse.Namespace, workers: int, threads: int | None) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "elman", "train", "imdb",
            "--epochs", "1", "--no-progress", "--out", f"{out}/model",
            "--device", args.device, "--nproc-per-node", str(workers),
        ]  # fmt: skip
        if args.data:
            command += ["--data", args.data]
        if threads:
            command += ["--threads", str(threads)]
        command += args.settings
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        history = json.loads((Path(out) / "model" / "history.json").read_text())
        return history[0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="aclImdb .tar.gz or folder (default: $ELMAN_DATA)")
    parser.add_argument(
        "--workers", type=int, nargs="+", help="(default: 1, 2, 4, 8 up to the cores here)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=2, help="jobs per row; the fastest counts")
    parser.add_argument(
        "settings", nargs="*", help="more elman train options, after --, e.g. -- --hidden-size 256"
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    args.workers = args.workers or [n for n in (1, 2, 4, 8) if n <= cores]  # (elman refuses more)
    reviews = 20_000
    shown = " ".join(args.settings) or "the reference model, per-worker batch 32"
    print(provenance() + "\n")
    print(f"IMDB, {shown}, {cores} cores, device {args.device}\n")
    print("| workers | threads each | s/epoch | reviews/s | speed-up | efficiency |")
    print("|---:|---:|---:|---:|---:|---:|")
    unit = None
    if args.device == "cpu":
        unit = epoch_seconds(args, 1, 1)
        print(f"| 1 | 1 | {unit:.1f} | {reviews / unit:,.0f} | 1.00x | 1.00 |")
    for workers in args.workers:
        seconds = epoch_seconds(args, workers, None)
        threads = max(1, cores // workers)
        if unit is None:
            print(f"| {workers} | gpu | {seconds:.1f} | {reviews / seconds:,.0f} | | |")
            continue
        speedup = unit / seconds
        used = min(cores, workers * threads)
        print(
            f"| {workers} | {threads} | {seconds:.1f} | {reviews / seconds:,.0f} "
            f"| {speedup:.2f}x | {speedup / used:.2f} |"
        )


if __name__ == "__main__":
    main()
