"""The IMDB results of the docs, trained again: the reference model and its variants (seed 0),
then the seed-to-seed spread of the reference run and of ``--preset best``.

    python benchmarks/results.py                       # every row, 5 seeds (about 30 minutes)
    python benchmarks/results.py --rows reference,bucket --seeds 2

Each row is ``elman train imdb --data ../shared/data/aclImdb.tar.gz FLAGS --seed S`` run in this
process (``suite.run_once``), read back from its ``metrics.json``. Printed as Markdown, with the
command, commit, machine and date above the tables. ``wall`` is ``total_seconds`` of
``metrics.json`` (reading the data to the saved folder; the encoded arrays are cached after the
first run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402
from suite import SETS, run_once, spread, suite_cache  # noqa: E402

# name -> (the flags after `elman train imdb --data ...`, what the row is)
ROWS: dict[str, tuple[tuple[str, ...], str]] = {
    "reference": ((), "(the reference model, fused kernel)"),
    "plain-loop": (("--backend", "reference"), "the plain loop (`elman.kernels.reference`)"),
    "bucket": (("--bucket",), "batches of reviews of similar length"),
    "all-states": (("--model", "rnn-all-states"), "all 500 states flattened into the dense layer"),
    "shallow": (("--model", "shallow"), "the naive baseline: 20 words, no RNN"),
    "lstm": (("--model", "lstm"), "`nn.LSTM` of the same width"),
    "gru": (("--model", "gru"), "`nn.GRU` of the same width"),
    "best": (("--preset", "best"), "the best recipe (all 25,000 reviews train it)"),
}
SPREAD = ("reference", "best")  # the rows trained with every seed


def row(name: str, runs: list[dict]) -> str:
    flags, what = ROWS[name]
    first = runs[0]
    epochs = f"{first['epochs_run']} ({first['best_epoch']})" if "best_epoch" in first else "-"
    val = f"{first['best_val_acc']:.4f}" if "best_val_acc" in first else "(none)"
    tfidf = first.get("baselines", {}).get("tfidf_logistic")
    cells = [
        f"`{' '.join(flags)}` {what}" if flags else what,
        epochs,
        val,
        f"**{first['test_acc']:.4f}**" if name == "reference" else f"{first['test_acc']:.4f}",
        f"{tfidf:.4f}" if tfidf else "-",
        f"{first['seconds_per_epoch']:.1f}",
        f"{first['total_seconds']:.0f} s",
    ]
    return "| " + " | ".join(cells) + " |"


def spread_row(name: str, runs: list[dict]) -> str:
    tests = [r["test_acc"] for r in runs]
    vals = [r["best_val_acc"] for r in runs if "best_val_acc" in r]
    each = ", ".join(f"{t:.4f}" for t in tests)
    return (
        f"| {ROWS[name][1]} | {len(runs)} | {each} | **{spread(tests)}** | "
        f"{spread(vals) if vals else '(none)'} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"of {', '.join(ROWS)}")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 of the spread rows")
    args = parser.parse_args(argv)
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")
    log = Path(tempfile.gettempdir()) / "elman-results.log"
    runs: dict[str, list[dict]] = {}
    for name in names:
        seeds = range(args.seeds if name in SPREAD else 1)
        flags = list(ROWS[name][0])
        runs[name] = [run_once(SETS["imdb"], flags, s, suite_cache(), log) for s in seeds]
        print(f"{name}: test acc {spread([r['test_acc'] for r in runs[name]])}", file=sys.stderr)
    print(provenance() + "\n")
    print("`elman train imdb --data ../shared/data/aclImdb.tar.gz FLAGS`, seed 0:\n")
    head = ("FLAGS", "epochs run (best)", "best val acc", "test acc", "tf-idf baseline")
    print("| " + " | ".join((*head, "s/epoch", "wall")) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, name_runs in runs.items():
        print(row(name, name_runs))
    spreads = [n for n in runs if n in SPREAD and len(runs[n]) > 1]
    if spreads:
        print(f"\nSeed to seed (`--seed 0` to `{args.seeds - 1}`; mean ± sd):\n")
        print("| run | seeds | test acc, each seed | test acc | best val acc |")
        print("|---|---|---|---|---|")
        for name in spreads:
            print(spread_row(name, runs[name]))
    tests = np.array([r["test_acc"] for r in runs.get("reference", [])])
    if len(tests) > 1:
        print(f"\nReference run, seed 0 against the seeds' mean: {tests[0] - tests.mean():+.4f}")


if __name__ == "__main__":
    main()
