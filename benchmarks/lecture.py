"""The lecture's measurements, made again: why a simple RNN forgets.

    python benchmarks/lecture.py --data ../shared/data/aclImdb.tar.gz --out docs/lecture

Trains the reference model, an LSTM and a GRU of the same width on IMDB (seed 0; kept in
``--runs``, reused when there), then prints as Markdown, with the command, commit, machine and
date above:
- the gradient flow (``elman analyze gradients``): ‖∂h_t/∂x_1‖ and ‖∂h_T/∂x_t‖ of each trained
  model and of the simple RNN freshly initialised, on the first test review of 300+ words, and
  the spectral radius of the simple RNN's recurrent matrix before and after training;
- recall against lag (``elman analyze memory``, its defaults);
- one review read word by word (``elman explain``).
The plots (gradients.png, memory.png, explain.png) are written to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402

REVIEW = (
    "I expected a boring film, but the acting was wonderful and the story kept me hooked until "
    "the very end. A great surprise."
)


def trained(runs: Path, model: str, data: str) -> Path:
    """The folder of ``elman train imdb --model MODEL`` (seed 0), trained once."""
    from elman.cli import main

    folder = runs / model
    if not (folder / "metrics.json").exists():
        argv = ["train", "imdb", "--model", model, "--data", data, "--out", str(folder)]
        with contextlib.redirect_stdout(io.StringIO()):
            if main([*argv, "--no-progress", "--overwrite"]) != 0:
                raise SystemExit(f"elman train imdb --model {model} failed")
    return folder


def gradient_tables(result: dict) -> str:
    lines = []
    for key, title in (("first", "‖∂h_t/∂x_1‖ at"), ("last", "‖∂h_T/∂x_t‖ at T − t + 1 =")):
        points = list(next(iter(result["summary"].values()))[key])
        lines += ["", f"| {title} | " + " | ".join(p.removeprefix("t=") for p in points) + " |"]
        lines.append("|---|" + "---:|" * len(points))
        for name, summary in result["summary"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.2g}" for v in summary[key].values()))
    radii = {n: c["spectral_radius"] for n, c in result["curves"].items() if "spectral_radius" in c}
    shown = ", ".join(f"{n} {r:.2f}" for n, r in radii.items())
    return "\n".join(lines) + f"\n\nSpectral radius of the recurrent matrix: {shown}."


def main(argv: list[str] | None = None) -> None:
    from elman.analysis.explain import explain
    from elman.analysis.gradients import analyze_gradients
    from elman.analysis.memory import MemoryConfig, analyze_memory, format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the aclImdb archive")
    parser.add_argument("--out", type=Path, default=Path("docs/lecture"), help="the plots")
    parser.add_argument("--runs", type=Path, default=Path("runs/lecture"), help="the models")
    args = parser.parse_args(argv)
    models = {m: trained(args.runs, m, args.data) for m in ("rnn", "lstm", "gru")}
    flow = analyze_gradients(models["rnn"], None, [models["lstm"], models["gru"]], args.out)
    config = MemoryConfig()
    recall = analyze_memory(config, args.out, lambda line: print(line, file=sys.stderr))
    reading = explain(models["rnn"], REVIEW, args.out)
    changes = sorted(zip(reading.changes(), reading.words, strict=True), key=lambda c: -abs(c[0]))
    print(provenance() + "\n")
    steps = next(iter(flow["curves"].values()))["review_steps"]
    print(f"**Gradient flow** on a test review of {steps} steps (`gradients.png`):")
    print(gradient_tables(flow))
    print(f"\n**Recall against lag** ({config.steps} steps of {config.batch_size} sequences")
    print(f"per layer and lag, width {config.hidden_size}; `memory.png`):\n")
    print(format_table(recall, config.symbols))
    print(f'\n**Word by word** (`explain.png`): "{REVIEW}" ends at P(positive) ')
    print(f"{reading.probabilities[-1]:.3f}; the words that moved it most: ")
    print(", ".join(f"*{w}* ({c:+.2f})" for c, w in changes[:4]) + ".")


if __name__ == "__main__":
    main()
