"""What a fresh install compiles: each family of elman's compiled code compiled from nothing, in a
new process whose numba cache is an empty folder (``NUMBA_CACHE_DIR``), timed from the first call
to its end (imports apart); optionally side by side with another checkout, interleaved.

    python benchmarks/compile.py [--repeats 3]
    python benchmarks/compile.py --against ../old/src   # another checkout's src folder

A first ``elman train imdb`` compiles the first two families in a second process while it reads
the data (``elman.workflow.compile_ahead``); a first ``elman train`` of any other model compiles
the third when its first batch arrives. Prints the median seconds of each, as Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import checkouts, commit, provenance, running  # noqa: E402

TIMED = "import time\nstarted = time.perf_counter()\n{}\nprint(time.perf_counter() - started)"

FAMILIES = {
    "tokenizer: ranked words and ids of 100 texts": (
        "from elman.data.fast_text import FastEncoder, ranked_words\n"
        "from elman.data.text import Vocabulary\n"
        "texts = ['A film, not a movie: the best of 2026!', 'Dull and far too long.'] * 50\n",
        "ranked = ranked_words(texts)\n"
        "FastEncoder(Vocabulary.from_ranked(ranked, len(ranked) + 3)).sequences(texts)",
    ),
    "token-id kernels: a training step and a prediction of the IMDB model (tiny)": (
        "import torch\n"
        "from elman.config import ModelConfig\n"
        "from elman.models import ReviewClassifier\n"
        "model = ReviewClassifier(ModelConfig(vocab_size=40, max_len=12))\n"
        "ids = torch.randint(3, 40, (8, 12))\n"
        "ids[0, :5] = 0\n",
        "model.train()(ids).sum().backward()\nwith torch.no_grad():\n    model.eval()(ids)",
    ),
    "fused kernels: a training step and a prediction of a SimpleRNN layer": (
        "import torch\n"
        "from elman import SimpleRNN\n"
        "layer = SimpleRNN(3, 16, return_sequences=True)\n"
        "x = torch.randn(8, 20, 3)\n",
        "layer(x).sum().backward()\nwith torch.no_grad():\n    layer(x)",
    ),
}


def compiled(setup: str, timed: str, source: Path) -> float:
    """Seconds that ``timed`` takes after ``setup``, in a new process running the ``elman`` in
    ``source`` with nothing compiled on disk."""
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [sys.executable, "-c", setup + TIMED.format(timed)],
            env={**running(source), "NUMBA_CACHE_DIR": cache},
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"compiling failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="compilations of each family")
    parser.add_argument("--against", type=Path, help="another checkout's src folder, to compare")
    args = parser.parse_args(argv)
    sources = checkouts(args.against)
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for family, (setup, timed) in FAMILIES.items():
            for name, source in sources.items():
                took = compiled(setup, timed, source)
                seconds.setdefault((family, name), []).append(took)
                print(f"{name}: {family}: {took:.1f} s", file=sys.stderr)
    print(provenance() + "\n")
    print(f"Compiled from nothing, median of {args.repeats} new processes each:\n")
    if args.against:
        print(f"(against: `{args.against}`, commit {commit(args.against.parent)}; interleaved)\n")
        print("| compiled | this | against |\n|---|---:|---:|")
    else:
        print("| compiled | seconds |\n|---|---:|")
    for family in FAMILIES:
        cells = [f"{statistics.median(seconds[family, name]):.1f} s" for name in sources]
        print(f"| {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
