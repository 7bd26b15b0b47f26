"""One training epoch of the reference IMDB model, side by side in one process:
elman's fused kernel, elman's reference loop, and the same network in plain PyTorch
(``nn.Embedding`` + ``nn.RNN`` + ``nn.Linear``), all with the same RMSprop, data and seed.
Then batch inference over the 25,000 test reviews with each.

    python benchmarks/epoch.py --data ../shared/data/aclImdb.tar.gz
    python benchmarks/epoch.py --steps 100   # time 100 steps per model and scale to an epoch
    python benchmarks/epoch.py --width 128 --batch-size 256 --steps 20   # a wider network

Prints seconds per epoch (training steps only; validation excluded; the best of ``--rounds``
interleaved rounds), the ratio to nn.RNN, and reviews per second of batch inference. Times are
measured here, now: compare ratios, not runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from elman.data.imdb import IMDBConfig, load_imdb
from elman.models import ModelConfig, ReviewClassifier, keras_dense_init
from elman.train import RMSprop, batch_order, bce_and_accuracy, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


class TorchRNNClassifier(nn.Module):
    """The reference network written with PyTorch's own layers (ids (B, T) -> logits (B,))."""

    def __init__(self, vocab_size: int = 10_000, embedding_dim: int = 32, hidden_size: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = nn.RNN(embedding_dim, hidden_size, batch_first=True)
        self.dense = nn.Linear(hidden_size, 1)
        keras_dense_init(self.dense)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embedding(ids))
        return self.dense(states[:, -1]).squeeze(-1)


def elman_model(backend: str, **settings) -> ReviewClassifier:
    model = ReviewClassifier(ModelConfig(**settings))
    model.rnn.backend = backend
    return model


class EveryStep(nn.Module):
    """The reference model read step by step over all 500 steps, padding included, by the fused
    layer (no shared padding, no fused embedding): what Keras does, and what recurrent dropout
    would cost if its masks applied to the padding too (they would make every row's padding
    trajectory different)."""

    def __init__(self, **settings) -> None:
        super().__init__()
        self.model = elman_model("fused", **settings)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids, layer_by_layer=True)


def time_epoch(model: nn.Module, data, batch_size: int, steps: int | None, bucket: bool) -> float:
    """Seconds for one epoch of training steps (or ``steps`` of them, scaled to an epoch)."""
    optimizer = RMSprop(model.parameters())
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    batches = batch_order(data.train.lengths, batch_size, bucket, torch.Generator().manual_seed(0))
    timed = batches[:steps] if steps else batches
    model.train()
    started = time.perf_counter()
    for rows in timed:
        loss, _ = bce_and_accuracy(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) * len(batches) / len(timed)


def time_inference(model: nn.Module, data, batch_size: int = 1000) -> tuple[float, float]:
    """(reviews per second, test accuracy) over the 25,000 test reviews."""
    model.eval()
    evaluate(model, data.test, batch_size)  # warm-up: compiled kernels, caches
    started = time.perf_counter()
    metrics = evaluate(model, data.test, batch_size)
    return len(data.test) / (time.perf_counter() - started), metrics["acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="aclImdb archive (default: $ELMAN_DATA or download)")
    parser.add_argument(
        "--steps", type=int, help="time this many steps per model, not a full epoch"
    )
    parser.add_argument("--skip-reference", action="store_true", help="leave out the slow loop")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed epochs per model (best counts)"
    )
    parser.add_argument("--width", type=int, default=32, help="embedding and hidden size")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    width = {"embedding_dim": args.width, "hidden_size": args.width}
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_imdb(IMDBConfig(data=args.data), vocab_size=10_000, max_len=500, seed=0)
    candidates = {
        "elman fused": lambda: elman_model("auto", **width),
        "elman fused --bucket": lambda: elman_model("auto", **width),
        "elman reference": lambda: elman_model("reference", **width),
        "torch nn.RNN": lambda: TorchRNNClassifier(10_000, args.width, args.width),
        "elman fused, every step": lambda: EveryStep(**width),
        "elman recurrent_dropout .2": lambda: elman_model("auto", recurrent_dropout=0.2, **width),
        "elman dropout .2": lambda: elman_model("auto", dropout=0.2, **width),
    }
    if args.skip_reference:
        del candidates["elman reference"]
    # Each model trains `--rounds` epochs, the rounds interleaved (all models once, then all
    # again) so that a slow spell of this shared machine hits every model alike; the fastest
    # round counts, as timeit does. The reference loop (~80 s an epoch) runs one round.
    best: dict[str, float] = {}
    models: dict[str, nn.Module] = {}
    for round_number in range(args.rounds):
        for name, build in candidates.items():
            if round_number and name == "elman reference":
                continue
            if round_number == 0:
                # Warm-up on a throwaway model: a process's one-off costs (numba loading its
                # compiled kernels, thread pools, first allocations), paid once, not per epoch.
                time_epoch(build(), data, args.batch_size, 50, False)
            torch.manual_seed(0)
            models[name] = build()
            bucket = name.endswith("--bucket")
            seconds = time_epoch(models[name], data, args.batch_size, args.steps, bucket)
            best[name] = min(seconds, best.get(name, seconds))
            print(f"  round {round_number + 1}: {name}: {seconds:.1f} s/epoch", file=sys.stderr)
    rows = []
    for name, model in models.items():
        reviews_per_second, _ = time_inference(model, data)
        rows.append((name, best[name], reviews_per_second))
        print(f"  {name}: {reviews_per_second:,.0f} reviews/s inference", file=sys.stderr)
    baseline = dict((name, seconds) for name, seconds, _ in rows)["torch nn.RNN"]
    baseline_inference = dict((name, rps) for name, _, rps in rows)["torch nn.RNN"]
    scaled = f" ({args.steps} steps scaled to an epoch)" if args.steps else ""
    threads = torch.get_num_threads()
    network = "reference model (322,113 parameters)" if args.width == 32 else f"width {args.width}"
    print(provenance() + "\n")
    print(f"IMDB {network}, batch {args.batch_size}, T=500, {threads} threads{scaled}")
    header = ("model", "s/epoch", "vs nn.RNN", "inference reviews/s", "vs nn.RNN")
    print()
    print("| {:<26} | {:>8} | {:>9} | {:>19} | {:>9} |".format(*header))
    print(f"|{'-' * 28}|{'-' * 9}:|{'-' * 10}:|{'-' * 20}:|{'-' * 10}:|")
    for name, seconds, rps in rows:
        print(
            f"| {name:<26} | {seconds:>8.1f} | {baseline / seconds:>8.1f}x | {rps:>19,.0f} | "
            f"{rps / baseline_inference:>8.1f}x |"
        )
    plain, every = best["elman fused"], best["elman fused, every step"]
    dropped = best["elman recurrent_dropout .2"]
    print(
        f"\nrecurrent_dropout=0.2: {dropped / plain:.2f}x the plain epoch (both read each "
        f"batch's padding once), {dropped / every:.2f}x the plain model reading every step"
    )


if __name__ == "__main__":
    main()
