"""IndRNN's diagonal recurrence on its compiled loop, against its reference loop and against the
simple RNN of the same width, side by side in one process.

    python benchmarks/diagonal.py

One layer, forward + backward (a training step's work), batch 32, input size = hidden size, one
thread (as ``elman analyze tasks`` runs); each call's fastest of ``--rounds`` interleaved
timings (``benchmarks/layer.py``'s ``best_seconds``). Prints milliseconds per call and the
ratios: the compiled loop over the reference loop, and IndRNN over the simple RNN's fused
kernel (a step of IndRNN is H multiply-adds per row, the simple RNN's H²).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from elman import SimpleRNN
from elman.cells.indrnn import IndRNN

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from layer import best_seconds  # noqa: E402
from report import provenance  # noqa: E402


def step(layer: torch.nn.Module, x: torch.Tensor):
    def call() -> None:
        layer(x).sum().backward()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import numba

    numba.set_num_threads(1)
    print(provenance() + "\n")
    print("One layer, forward + backward, batch 32, 1 thread, ms per call:\n")
    print("| T | H | IndRNN compiled | IndRNN loop | SimpleRNN fused | speed-up of compiled |")
    print("|---:|---:|---:|---:|---:|---:|")
    for steps, hidden in ((100, 64), (500, 64), (500, 256)):
        x = torch.randn(32, steps, hidden)
        layers = {
            "compiled": IndRNN(hidden, hidden, return_sequences=True),
            "loop": IndRNN(hidden, hidden, return_sequences=True, backend="reference"),
            "simple": SimpleRNN(hidden, hidden, return_sequences=True),
        }
        best = best_seconds({k: step(v, x) for k, v in layers.items()}, args.rounds)
        ms = {k: 1000 * v for k, v in best.items()}
        print(
            f"| {steps} | {hidden} | {ms['compiled']:.2f} | {ms['loop']:.2f} | "
            f"{ms['simple']:.2f} | {ms['loop'] / ms['compiled']:.1f}x |"
        )


if __name__ == "__main__":
    main()
