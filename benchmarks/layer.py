"""One recurrent layer, elman against ``torch.nn.RNN``, over a grid of shapes, side by side in one
process: forward + backward (training) and forward alone under ``no_grad`` (inference).

    python benchmarks/layer.py            # the whole grid (several minutes)
    python benchmarks/layer.py --quick    # B in {1, 32}, T in {100, 500}, H in {32, 128}
    python benchmarks/layer.py --shape 32 100 32 --rounds 7   # one point, one layer

Both layers hold the same weights (``elman.RNN`` loads the ``nn.RNN`` state dict) and read the
same input (B, T, H), batch first, input size = hidden size. Each measurement alternates the two
layers ``--rounds`` times and keeps each one's fastest call (this machine's timings swing from
minute to minute). Prints, per shape: milliseconds per call, the ratio nn.RNN / elman, and
elman's achieved GFLOP/s against the machine's float32 matrix-multiply peak (measured here, with
torch's matmul on as many threads), and the ceiling: the ratio a kernel running at that peak
would reach (nn.RNN's time over the FLOPs' time at peak). Compare ratios, not runs.

FLOPs counted: forward 2·B·T·H·(H + F) (the recurrence and the input projection), backward twice
that (the gradients of the states and of the weights); elementwise work is not counted.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import elman

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402

GRID = ((1, 32, 256), (100, 500, 2000), (32, 128, 512))  # batch, steps, hidden = input


def best_seconds(calls: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Each call's fastest time over ``rounds``, the calls interleaved; repeats a fast call so
    that one timing lasts at least 20 ms."""
    for call in calls.values():  # warm-up: compiled kernels, thread pools, allocations
        call()
    repeats = {}
    for name, call in calls.items():
        started = time.perf_counter()
        call()
        repeats[name] = max(1, int(0.02 / max(time.perf_counter() - started, 1e-6)))
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(repeats[name]):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / repeats[name])
    return best


def matmul_peak(threads: int) -> float:
    """GFLOP/s of a large float32 matrix multiply on this machine, now."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = best_seconds({"mm": lambda: torch.mm(a, b)}, rounds=5)["mm"]
    return 2 * 2048**3 / seconds / 1e9


def layers(hidden: int, num_layers: int, bidirectional: bool) -> tuple[nn.RNN, elman.RNN]:
    torch.manual_seed(0)
    torch_rnn = nn.RNN(hidden, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
    ours = elman.RNN(hidden, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
    ours.load_state_dict(torch_rnn.state_dict())
    return torch_rnn, ours


def measure(batch: int, steps: int, hidden: int, num_layers: int, bidirectional: bool, rounds: int):
    """(training seconds, inference seconds) per layer kind, and the forward FLOPs."""
    torch_rnn, ours = layers(hidden, num_layers, bidirectional)
    x = torch.randn(batch, steps, hidden, requires_grad=True)
    x_inference = x.detach()

    def train(layer: nn.Module) -> Callable[[], None]:
        def call() -> None:
            x.grad = None
            layer.zero_grad(set_to_none=True)
            output, _ = layer(x)
            output.sum().backward()

        return call

    def infer(layer: nn.Module) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                layer(x_inference)

        return call

    training = best_seconds({"torch": train(torch_rnn), "elman": train(ours)}, rounds)
    inference = best_seconds({"torch": infer(torch_rnn), "elman": infer(ours)}, rounds)
    directions = 2 if bidirectional else 1
    widths = [hidden] + [hidden * directions] * (num_layers - 1)
    flops = sum(2 * batch * steps * hidden * (hidden + w) * directions for w in widths)
    return training, inference, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a corner of the grid")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timings per layer")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("B", "T", "H"), help="one point of the grid only"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    peak = matmul_peak(threads)
    batches, steps, hiddens = ((1, 32), (100, 500), (32, 128)) if args.quick else GRID
    grid = [
        (batch, length, hidden, 1, False)
        for batch, length, hidden in itertools.product(batches, steps, hiddens)
    ]
    grid += [(32, 500, hidden, 1, True) for hidden in (32, 128)]
    grid += [(32, 500, hidden, 2, False) for hidden in (32, 128)]
    if args.shape:  # (to compare two versions at one point, run each in turn, several times)
        grid = [(*args.shape, 1, False)]
    print(provenance() + "\n")
    print(f"{threads} threads; float32 matmul peak here: {peak:.0f} GFLOP/s\n")
    header = "|    B |    T |   H | layer    |"
    header += " train ms: torch | elman | ratio | GFLOP/s | ceiling |"
    header += " infer ms: torch | elman | ratio | GFLOP/s | ceiling |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    worst = float("inf")
    for batch, steps, hidden, num_layers, bidirectional in grid:
        training, inference, flops = measure(
            batch, steps, hidden, num_layers, bidirectional, args.rounds
        )
        kind = "bidir" if bidirectional else f"{num_layers} layer" + ("s" if num_layers > 1 else "")
        cells = []
        for seconds, work in ((training, 3 * flops), (inference, flops)):
            ratio = seconds["torch"] / seconds["elman"]
            worst = min(worst, ratio)
            gflops = work / seconds["elman"] / 1e9
            ceiling = seconds["torch"] / (work / peak / 1e9)
            cells.append(
                f" {seconds['torch'] * 1e3:15.2f} | {seconds['elman'] * 1e3:5.2f} | "
                f"{ratio:4.1f}x | {gflops:3.0f} {gflops / peak:3.0%} | {ceiling:6.1f}x |"
            )
        print(f"| {batch:4d} | {steps:4d} | {hidden:3d} | {kind:<8} |" + "".join(cells), flush=True)
    print(f"\nslowest ratio: {worst:.2f}x nn.RNN")


if __name__ == "__main__":
    main()
