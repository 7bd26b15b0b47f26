"""elman's echo-state network beside reservoirpy's, on the same data, side by side.

    pip install reservoirpy==0.4.2          (the ``bench`` extra: pip install -e ".[bench]")
    python benchmarks/esn.py [--sets gunpoint,coffee,trace,basicmotions,pigcvp,fsdd] [--seeds 3]

Both read the same splits (elman's readers: the training split's standardisation, the same
test set) with the same reservoir settings (256 units, spectral radius 0.9, leak rate 1, 10% of
the recurrent weights non-zero, dense input weights and biases uniform in ±1), pool the states
the same way (max and mean over the steps read) and choose the ridge penalty by the same 5-fold
cross-validation on all the training data (``elman.cells.reservoir.cross_validated``), then fit
the readout on all of it: elman with ``--model esn``, reservoirpy with its ``Reservoir`` and
``Ridge`` nodes. Only the reservoir's random draws differ (each library's own generator), so
the accuracies differ by what the draw does; the seconds are each library's own work (the
states, the readout, the test predictions) on this machine, data reading excluded. (This is the
textbook reservoir, ``--leak-rate 1 --time-scales 1``, which both libraries define alike;
elman's default for ``--model esn`` is four of them with leak rates from 1 to 0.03.)

The last column measures the protocol: the same reservoir with its penalty chosen on the
validation split alone and its readout fitted to the rest of the training data.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import provenance  # noqa: E402
from suite import SHARED, chosen, fetch, spread, suite_cache  # noqa: E402

from elman.cells.reservoir import (  # noqa: E402
    RIDGES,
    cross_validated,
    features_of,
    ridge_fits,
    ridge_targets,
)
from elman.cli import build_parser, run_config  # noqa: E402
from elman.models import skip_missing  # noqa: E402
from elman.workflow import new_model, prepare_data  # noqa: E402

UNITS, RADIUS, DENSITY = 256, 0.9, 0.1


def splits_of(suite_set, cache: Path, seed: int):
    """The set's config and splits as ``elman train`` reads them with ``--model esn``."""
    filled = [a.format(cache=cache, shared=SHARED) for a in suite_set.args]
    plain = ["--model", "esn", "--leak-rate", "1", "--time-scales", "1", "--seed", str(seed)]
    args = build_parser().parse_args(["train", *filled, *plain])
    config = run_config(args)
    return prepare_data(config, log=lambda _: None)


def elman_esn(config, splits) -> tuple[float, float]:
    from elman.train import fit

    started = time.perf_counter()
    model = new_model(config, splits)
    fit(model, splits.train, splits.val, config.train, log=lambda _: None)
    with torch.no_grad():
        logits = model(torch.from_numpy(splits.test.x))
    predicted = (logits > 0).long() if logits.dim() == 1 else logits.argmax(1)
    accuracy = (predicted.numpy() == splits.test.y).mean()
    return float(accuracy), time.perf_counter() - started


def elman_single_split(config, splits) -> float:
    """The same reservoir with the penalty chosen on the validation split alone and the
    readout fitted to the rest of the training data (what a gradient-trained run does), to
    measure what k-fold choice and the final fit on all the training data buy."""
    model = new_model(config, splits).eval()
    train, val, test = (features_of(model, s.x) for s in (splits.train, splits.val, splits.test))
    classes = max(len(config.classes), 2)
    targets = ridge_targets(torch.from_numpy(splits.train.y), classes)

    def accuracy(weights, bias, features, y) -> float:
        scores = features @ weights + bias
        predicted = (scores[:, 0] > 0).long() if classes == 2 else scores.argmax(1)
        return float((predicted.numpy() == y).mean())

    fits = ridge_fits(train, targets, RIDGES)
    best = max(fits, key=lambda fit: accuracy(*fit, val, splits.val.y))
    return accuracy(*best, test, splits.test.y)


def _series(x: np.ndarray, mean, std) -> list[np.ndarray]:
    """Values (N, T, F) with NaN padding -> each series' present steps, standardised."""
    values, lengths = skip_missing((torch.from_numpy(x) - mean) / std)
    return [v[:n].double().numpy() for v, n in zip(values, lengths.tolist(), strict=True)]


def reservoirpy_esn(config, splits, seed: int) -> tuple[float, float]:
    from reservoirpy.mat_gen import uniform
    from reservoirpy.nodes import Reservoir, Ridge

    mean, std = (torch.from_numpy(a) for a in (splits.learned.mean, splits.learned.std))
    started = time.perf_counter()
    reservoir = Reservoir(
        UNITS,
        sr=RADIUS,
        lr=1.0,
        input_scaling=1.0,
        rc_connectivity=DENSITY,
        input_connectivity=1.0,
        Win=uniform(low=-1, high=1),
        bias=uniform(low=-1, high=1),
        seed=seed,
    )

    def features(x: np.ndarray) -> np.ndarray:
        pooled = []
        for series in _series(x, mean, std):
            # Each series from the zero state: reservoirpy 0.4.2 resets between the rows of a
            # 3-D array but carries the state across a list's series and across calls.
            if reservoir.initialized:
                reservoir.reset()
            states = reservoir.run(series)
            pooled.append(np.concatenate([states.max(0), states.mean(0)]))
        return np.stack(pooled)

    x = np.concatenate([splits.train.x, splits.val.x])
    y = torch.from_numpy(np.concatenate([splits.train.y, splits.val.y]))
    train = features(x)
    classes = max(len(config.classes), 2)
    tried = cross_validated(torch.from_numpy(train), y, classes, seed)
    penalty = max(tried, key=lambda r: (r["acc"], -r["loss"]))["ridge"]
    center, scale = train.mean(0), train.std(0).clip(min=1e-8)
    readout = Ridge(ridge=penalty).fit((train - center) / scale, ridge_targets(y, classes).numpy())
    scores = readout.run((features(splits.test.x) - center) / scale)
    predicted = (scores[:, 0] > 0).astype(int) if classes == 2 else scores.argmax(1)
    return float((predicted == splits.test.y).mean()), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="gunpoint,coffee,trace,basicmotions,pigcvp,fsdd")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    import reservoirpy

    cache = suite_cache()
    sets = chosen(args.sets)
    fetch(cache, sets)
    print(provenance()[:-2] + f"; reservoirpy {reservoirpy.__version__}._\n")
    print(
        "| set | elman esn acc | elman s | reservoirpy acc | reservoirpy s | s ratio "
        "| elman, penalty on one split |"
    )
    print("|---|---|---|---|---|---|---|")
    for suite_set in sets:
        ours, theirs, single = [], [], []
        for seed in range(args.seeds):
            config, splits = splits_of(suite_set, cache, seed)
            quiet = config.train.fitted_to(len(splits.train), 1, lambda _: None)
            config = replace(config, train=quiet)
            if seed == 0:
                elman_esn(config, splits)  # (untimed: compiles the kernels for this input)
            ours.append(elman_esn(config, splits))
            theirs.append(reservoirpy_esn(config, splits, seed))
            single.append(elman_single_split(config, splits))
        ours_s, theirs_s = np.mean([s for _, s in ours]), np.mean([s for _, s in theirs])
        print(
            f"| {suite_set.name} | {spread([a for a, _ in ours])} | {ours_s:.2f} | "
            f"{spread([a for a, _ in theirs])} | {theirs_s:.2f} | {theirs_s / ours_s:.1f} | "
            f"{spread(single)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
