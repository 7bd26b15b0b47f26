"""The echo-state network (Jaeger 2001) as a kind of cell: ``esn``.

The reservoir is the Elman cell with a fixed random ``A``, drawn once and never trained,

    h_t = (1 - a) · h_{t-1} + a · tanh(A · [h_{t-1}; x_t] + b)        (a: the leak rate)

its recurrent part sparse (``density``) and scaled to a ``spectral_radius``, its input part and
bias uniform in ±``input_scaling``. With ``time_scales`` N > 1 it is N reservoirs side by side
(``A``'s recurrent part block-diagonal), their leak rates geometric from 1 to ``leak_rate``:
fast and slow memories for one readout. With a = 1 it is exactly ``SimpleRNN`` and runs on its fast
kernels. Only the dense layer learns: a ridge regression from the pooled states to the classes'
±1 targets, solved in closed form (``solve``), its penalty chosen by k-fold cross-validation
over all the labelled training data (the reservoir is fixed, so its states are computed once
and each fold is a small solve), then a temperature that turns its scores into calibrated
logits. Seconds to train; saved, loaded and served like any model (its ``A`` is in the weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from elman.cells.kind import CellKind, LayerSettings
from elman.kernels.reference import rnn_cell
from elman.rnn import SimpleRNN

RIDGES = tuple(10.0**k for k in np.arange(-4, 4.01, 0.5))  # the penalties tried
TEMPERATURES = tuple(np.geomspace(0.05, 200, 81))
FOLDS = 5


class Reservoir(nn.Module):
    """A fixed random simple RNN (see the module docstring). (B, T, F) and ``lengths`` (B,) ->
    the last state read (B, H), or every state (B, T, H) with ``return_sequences``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        spectral_radius: float = 0.9,
        input_scaling: float = 1.0,
        leak_rate: float = 1.0,
        density: float = 0.1,
        time_scales: int = 1,
        return_sequences: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.return_sequences = return_sequences
        self.rnn = SimpleRNN(input_size, hidden_size, return_sequences=True, backend=backend)
        # ``time_scales`` reservoirs side by side (an ensemble: one block each, no weights
        # between them), leak rates geometric from 1 down to ``leak_rate``
        # (as even as can be: the first ``hidden_size % time_scales`` blocks one unit larger)
        sizes = [
            hidden_size // time_scales + (i < hidden_size % time_scales) for i in range(time_scales)
        ]
        leaks = [leak_rate]
        if time_scales > 1:
            leaks = [leak_rate ** (i / (time_scales - 1)) for i in range(time_scales)]
        rates = torch.cat([torch.full((n,), a) for n, a in zip(sizes, leaks, strict=True)])
        self.register_buffer("leak_rates", rates)
        self.leaky = any(a < 1 for a in leaks)
        H = hidden_size
        with torch.no_grad():
            self.rnn.A.zero_()
            start = 0
            for n in sizes:
                block = torch.randn(n, n) * (torch.rand(n, n) < density)
                radius = torch.linalg.eigvals(block).abs().max().clamp(min=1e-12)
                self.rnn.A[start : start + n, start : start + n] = block * (
                    spectral_radius / radius
                )
                start += n
            self.rnn.A[:, H:].uniform_(-input_scaling, input_scaling)
            self.rnn.b.uniform_(-input_scaling, input_scaling)
        self.rnn.requires_grad_(False)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        if not self.leaky:
            states = self.rnn(x, lengths=lengths)
        else:
            states = self.leaky_states(x, lengths)
        if self.return_sequences:
            return states
        last = (lengths.to(x.device) - 1).clamp(min=0)
        return states[torch.arange(x.shape[0], device=x.device), last]

    def leaky_states(self, x: Tensor, lengths: Tensor) -> Tensor:
        """States (B, T, H) of the leaky reservoir, a step at a time; steps past a row's length
        carry its state."""
        h = x.new_zeros(x.shape[0], self.hidden_size)
        read = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        states = []
        for t in range(x.shape[1]):
            new = self.step(h, x[:, t])
            h = torch.where(read[:, t, None], new, h)
            states.append(h)
        return torch.stack(states, 1) if states else x.new_zeros(x.shape[0], 0, self.hidden_size)

    def step(self, h: Tensor, x_t: Tensor) -> Tensor:
        """One step: (B, H), (B, F) -> (B, H)."""
        new = rnn_cell(h, x_t, self.rnn.A, self.rnn.b, "tanh")
        return (1 - self.leak_rates) * h + self.leak_rates * new


def build(settings: LayerSettings, input_size: int, return_sequences: bool) -> nn.Module:
    return Reservoir(
        input_size,
        settings.hidden_size,
        spectral_radius=settings.spectral_radius,
        input_scaling=settings.input_scaling,
        leak_rate=settings.leak_rate,
        density=settings.density,
        time_scales=settings.time_scales,
        return_sequences=return_sequences,
        backend=settings.backend,
    )


# ---- the readout: ridge regression in closed form --------------------------------------------


def ridge_fits(features: Tensor, targets: Tensor, penalties) -> list[tuple[Tensor, Tensor]]:
    """Ridge regressions of ``targets`` (N, K) on ``features`` (N, D), float64, one per penalty:
    [(weights (D, K), bias (K,))]. The features are standardised first (so that one penalty
    suits every unit) and the standardisation folded back into the weights; one SVD serves
    every penalty."""
    mean, std = features.mean(0), features.std(0, correction=0).clamp(min=1e-8)
    z = (features - mean) / std
    target_mean = targets.mean(0)
    U, S, Vh = torch.linalg.svd(z, full_matrices=False)
    projected = U.T @ (targets - target_mean)
    fits = []
    for penalty in penalties:
        weights = Vh.T @ ((S / (S**2 + penalty))[:, None] * projected) / std[:, None]
        fits.append((weights, target_mean - mean @ weights))
    return fits


def ridge_targets(y: Tensor, classes: int) -> Tensor:
    """Labels (N,) -> ±1 targets: (N, 1) for two classes (the logit's sign), else (N, C)."""
    if classes == 2:
        return (2.0 * y.double() - 1.0)[:, None]
    return 2.0 * torch.nn.functional.one_hot(y.long(), classes).double() - 1.0


def _loss_and_accuracy(scores: Tensor, y: Tensor, classes: int) -> tuple[float, float]:
    if classes == 2:
        logits = scores[:, 0]
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y.double())
        return loss.item(), ((logits > 0).long() == y).double().mean().item()
    loss = nn.functional.cross_entropy(scores, y.long())
    return loss.item(), (scores.argmax(1) == y).double().mean().item()


def calibrated(scores: Tensor, y: Tensor, classes: int) -> tuple[float, float, float]:
    """The temperature that makes ``scores`` the best logits for ``y`` (lowest log loss), with
    that loss and the accuracy (which no temperature changes)."""
    losses = [_loss_and_accuracy(t * scores, y, classes) for t in TEMPERATURES]
    best = min(range(len(losses)), key=lambda i: losses[i][0])
    return float(TEMPERATURES[best]), *losses[best]


def out_of_fold(features: Tensor, targets: Tensor, groups: Tensor, seed: int, penalties) -> Tensor:
    """Each penalty's prediction (P, N, K) for every row of ``features`` (N, D) by a readout
    fitted without that row's fold: the ``groups`` (N,) (a sample, or the series a step belongs
    to) dealt over ``FOLDS`` folds in a seeded order."""
    names = torch.unique(groups)
    order = names[torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))]
    count = min(FOLDS, len(names))
    predictions = torch.zeros(len(penalties), *targets.shape, dtype=torch.float64)
    for fold in range(count):
        held = torch.isin(groups, order[fold::count])
        for i, (weights, bias) in enumerate(ridge_fits(features[~held], targets[~held], penalties)):
            predictions[i, held] = features[held] @ weights + bias
    return predictions


def cross_validated(
    features: Tensor, y: Tensor, classes: int, seed: int, penalties=RIDGES
) -> list[dict]:
    """Each penalty's out-of-fold scores (``out_of_fold``, one sample a group), calibrated:
    a list of {"ridge", "temperature", "loss", "acc"}."""
    groups = torch.arange(len(y))
    scores = out_of_fold(features, ridge_targets(y, classes), groups, seed, penalties)
    results = []
    for penalty, fold_scores in zip(penalties, scores, strict=True):
        temperature, loss, accuracy = calibrated(fold_scores, y, classes)
        results.append(
            {"ridge": penalty, "temperature": temperature, "loss": loss, "acc": accuracy}
        )
    return results


@torch.no_grad()
def features_of(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> Tensor:
    """The pooled reservoir states the dense layer reads, float64 (N, D)."""
    rows = [
        model.features(torch.from_numpy(x[i : i + batch_size])).double()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(rows)


@torch.no_grad()
def forecast_rows(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """For forecasting: the state (D,) at every step that has a next value, that value (F,),
    and the series it belongs to, float64 rows (R, D), (R, F), (R,)."""
    features, targets, groups = [], [], []
    for i in range(0, len(x), batch_size):
        states = model.features(torch.from_numpy(x[i : i + batch_size])).double()
        target = torch.from_numpy(y[i : i + batch_size, : states.shape[1]]).double()
        present = ~torch.isnan(target).any(-1)
        features.append(states[present])
        targets.append(target[present])
        groups.append((torch.arange(i, i + len(states))[:, None].expand_as(present))[present])
    return torch.cat(features), torch.cat(targets), torch.cat(groups)


def _classifier(model: nn.Module, x: np.ndarray, y: Tensor, seed: int, penalties) -> dict:
    """The readout of a classifier: penalty and temperature by cross-validation, then fitted
    to all of ``x``; its record (loss, acc, val_loss, val_acc, ridge, temperature)."""
    features, classes = features_of(model, x), model.classes
    best = max(
        cross_validated(features, y, classes, seed, penalties),
        key=lambda r: (r["acc"], -r["loss"]),
    )
    weights, bias = ridge_fits(features, ridge_targets(y, classes), [best["ridge"]])[0]
    weights, bias = best["temperature"] * weights, best["temperature"] * bias
    loss, accuracy = _loss_and_accuracy(features @ weights + bias, y, classes)
    _set_dense(model, weights, bias)
    return {"loss": loss, "acc": accuracy, "val_loss": best["loss"], "val_acc": best["acc"],
            "ridge": best["ridge"], "temperature": best["temperature"]}  # fmt: skip


def _forecaster(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int, penalties) -> dict:
    """The readout of a forecaster: each step's state -> the next value (standardised), the
    penalty chosen by cross-validation over whole series; its record (loss = MSE, mae)."""
    features, targets, groups = forecast_rows(model, x, y)
    predictions = out_of_fold(features, targets, groups, seed, penalties)
    errors = [((p - targets) ** 2).mean().item() for p in predictions]
    best = min(range(len(penalties)), key=errors.__getitem__)
    weights, bias = ridge_fits(features, targets, [penalties[best]])[0]
    _set_dense(model, weights, bias)
    fitted = features @ weights + bias
    return {
        "loss": ((fitted - targets) ** 2).mean().item(),
        "mae": (fitted - targets).abs().mean().item(),
        "val_loss": errors[best],
        "val_mae": (predictions[best] - targets).abs().mean().item(),
        "ridge": penalties[best],
    }


def _set_dense(model: nn.Module, weights: Tensor, bias: Tensor) -> None:
    with torch.no_grad():
        model.dense.weight.copy_(weights.T.float())
        model.dense.bias.copy_(bias.float())


def solve(model: nn.Module, train, val, config, log: Callable[[str], None]) -> list[dict]:
    """Train the readout of an echo-state ``model`` on ``train`` and ``val`` (``Split``s): the
    penalty (``ridge`` if set; and for a classifier the temperature) chosen by cross-validation
    over both, then the dense layer fitted to both. Returns the history: one record, as
    ``fit`` writes one per epoch."""
    started = time.perf_counter()
    model.eval()
    x = np.concatenate([train.x, val.x]) if len(val) else train.x
    y = np.concatenate([train.y, val.y]) if len(val) else train.y
    penalties = RIDGES if model.config.ridge is None else (model.config.ridge,)
    if model.task == "forecast":
        record = _forecaster(model, x, y, config.seed, penalties)
    else:
        record = _classifier(model, x, torch.from_numpy(y), config.seed, penalties)
    metric = "mae" if model.task == "forecast" else "acc"
    log(
        f"Reservoir readout: ridge {record['ridge']:g}, chosen by {FOLDS}-fold cross-validation "
        f"on the {len(x)} training series (val {metric} {record['val_' + metric]:.4f}); "
        f"fitted to all of them: {metric} {record[metric]:.4f}"
    )
    return [{"epoch": 1, **record, "seconds": time.perf_counter() - started}]


def recurrent_matrix(reservoir: nn.Module) -> Tensor:
    return reservoir.rnn.A[:, : reservoir.hidden_size]


ESN = CellKind(
    name="esn",
    help="an echo-state network: a fixed random simple RNN, its pooled states read by a ridge "
    "regression solved in closed form (numeric sequences; seconds to train)",
    build=build,
    numbers_only=True,
    pools=True,
    compiled=True,
    recurrent_matrix=recurrent_matrix,
    solve=solve,
    # chosen on the development suite's validation protocol (README, "How recipes are chosen")
    preset={
        "model": {"hidden_size": 256, "pooling": "max+mean", "time_scales": 4, "leak_rate": 0.03}
    },
)
