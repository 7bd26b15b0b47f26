"""One training epoch on real speech (FSDD log-mel frames), side by side in one process: elman's
SequenceModel (fused kernel, missing steps masked) against the same network written the usual
PyTorch way for sequences of unequal length (``pack_padded_sequence`` + ``nn.RNN``), and the
gated layers of the same width for scale. Same data, batches and RMSprop.

    python benchmarks/sequence.py --data ../shared/data/fsdd.tar.gz

Prints seconds per epoch (the best of ``--rounds`` interleaved rounds) and the ratio to the
packed nn.RNN. Times are measured here, now: compare ratios, not runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from elman.data.speech import SpeechConfig, load_speech
from elman.models import SequenceConfig, SequenceModel, skip_missing
from elman.train import RMSprop, batch_order, loss_and_metric

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


class PackedTorchRNN(nn.Module):
    """nn.RNN over packed sequences, standardised inputs, last present state -> Dense(C)."""

    task = "multiclass"

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden_size: int, classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.rnn = nn.RNN(len(mean), hidden_size, batch_first=True)
        self.dense = nn.Linear(hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, lengths = skip_missing((x - self.mean) / self.std)
        packed = nn.utils.rnn.pack_padded_sequence(
            values, lengths, batch_first=True, enforce_sorted=False
        )
        _, last = self.rnn(packed)
        return self.dense(last[0])


def time_epoch(model: nn.Module, train, batch_size: int) -> float:
    optimizer = RMSprop(model.parameters())
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    batches = batch_order(train.lengths, batch_size, False, torch.Generator().manual_seed(0))
    model.train()
    started = time.perf_counter()
    for rows in batches:
        loss, _ = loss_and_metric("multiclass", model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fsdd.tar.gz")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data, _ = load_speech(
        SpeechConfig(data=args.data, test_pattern=r"_[0-4]\.wav$"), seed=0, log=lambda _: None
    )
    mean, std = torch.from_numpy(data.mean), torch.from_numpy(data.std)
    classes = len(data.classes)

    def sequence_model(architecture: str) -> SequenceModel:
        config = SequenceConfig(architecture, len(mean), args.hidden_size)
        model = SequenceModel(config, classes=classes)
        model.mean.copy_(mean)
        model.std.copy_(std)
        return model

    torch.manual_seed(0)
    models = {
        "elman SimpleRNN (fused)": sequence_model("rnn"),
        "torch nn.RNN (packed)": PackedTorchRNN(mean, std, args.hidden_size, classes),
        "torch nn.LSTM (packed)": sequence_model("lstm"),
        "torch nn.GRU (packed)": sequence_model("gru"),
    }
    for model in models.values():  # warm-up: compiled kernels, thread pools, allocations
        time_epoch(model, data.val, args.batch_size)
    best = {name: float("inf") for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            best[name] = min(best[name], time_epoch(model, data.train, args.batch_size))
    baseline = best["torch nn.RNN (packed)"]
    frames = int(data.train.lengths.mean())
    print(provenance() + "\n")
    print(
        f"FSDD, {len(data.train)} recordings (mean {frames} frames of {len(mean)} log-mels), "
        f"hidden {args.hidden_size}, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print("\n| model                    | s/epoch | vs packed nn.RNN |")
    print("|--------------------------|--------:|-----------------:|")
    for name, seconds in best.items():
        print(f"| {name:<24} | {seconds:7.2f} | {baseline / seconds:15.1f}x |")


if __name__ == "__main__":
    main()
