"""Why simple RNNs forget, measured: exact Jacobians of the states with respect to the inputs.

For one review (its padded ids, as the classifier reads them):

- ``first``: ‖∂h_t/∂x_1‖ for every t ≥ 1, where x_1 is the embedding of the review's first
  input (its start token): how much of the beginning is still in the state after t steps.
  Forward-mode AD, one pass per embedding dimension.
- ``last``: ‖∂h_T/∂x_t‖ for every t: how much each position still moves the final state, the
  one the classifier reads. Reverse-mode AD, one pass per state dimension.

Norms are Frobenius norms of the (H × E) Jacobian blocks. For the simple RNN, the singular values
and spectral radius of the recurrent part of ``A`` say why: ∂h_t/∂h_{t-1} = diag(1 - h_t²)·W_h,
and a product of such matrices shrinks as fast as their norms are below one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from elman.analysis.cells import hidden, step_function
from elman.data.text import PAD, tokenize
from elman.files import atomic_write, json_bytes
from elman.models import ReviewClassifier


def _first_word(ids: Tensor) -> int:
    """Index of the first non-padding id of a (T,) row."""
    words = (ids != PAD).nonzero()
    return int(words[0]) if len(words) else len(ids)


def gradient_flow(model: ReviewClassifier, ids: Tensor) -> dict[str, object]:
    """Jacobian norms for one review, ids (T,) int64 as the model reads them (padded).

    Returns ``first`` (‖∂h_t/∂x_1‖, t = 1..L over the review's L steps), ``last``
    (‖∂h_T/∂x_t‖, t = 1..L), and for a simple RNN ``singular_values`` and ``spectral_radius``
    of W_h. The padding before the review is run first, so the state the review starts from is
    the one the classifier really has."""
    model.eval()
    start = _first_word(ids)
    with torch.no_grad():
        x = model.embedding(ids).detach()  # (T, E)
    step, state = step_function(model)
    with torch.no_grad():
        for t in range(start):
            state = step(state, x[t : t + 1])
    words = x[start:]
    steps = len(words)

    # ‖∂h_t/∂x_1‖: one forward-mode pass per embedding dimension e gives column e of every
    # ∂h_t/∂x_1 at once.
    squared = torch.zeros(steps, dtype=torch.float64)
    for e in range(words.shape[1]):
        tangent = torch.zeros_like(words)
        tangent[0, e] = 1.0
        with torch.no_grad(), fwAD.dual_level():
            dual = fwAD.make_dual(words, tangent)
            current = state
            for t in range(steps):
                current = step(current, dual[t : t + 1])
                squared[t] += float(fwAD.unpack_dual(hidden(current)).tangent.pow(2).sum())
    first = squared.sqrt()

    # ‖∂h_T/∂x_t‖: one reverse pass per dimension of h_T.
    words = words.clone().requires_grad_()
    current = state
    for t in range(steps):
        current = step(current, words[t : t + 1])
    final = hidden(current)[0]
    squared = torch.zeros(steps, dtype=torch.float64)
    for i in range(final.shape[0]):
        (grad,) = torch.autograd.grad(final[i], words, retain_graph=True)
        squared += grad.double().pow(2).sum(1)
    last = squared.sqrt()

    result: dict[str, object] = {
        "architecture": model.config.architecture,
        "review_steps": steps,
        "first": first.tolist(),
        "last": last.tolist(),
    }
    recurrent = model.cell.recurrent_matrix
    if recurrent is not None and recurrent(model.rnn) is not None:
        W_h = recurrent(model.rnn).detach().double()
        result["singular_values"] = torch.linalg.svdvals(W_h).tolist()
        result["spectral_radius"] = float(torch.linalg.eigvals(W_h).abs().max())
    return result


def decay_summary(
    values: list[float], at: tuple[int, ...] = (1, 10, 50, 100, 200, 300)
) -> dict[str, float]:
    """The curve at a few positions (1-based), for tables."""
    return {f"t={t}": values[t - 1] for t in at if t <= len(values)}


def plot_gradient_flow(curves: dict[str, dict[str, object]], path: str) -> None:
    """Two log-scale panels: ‖∂h_t/∂x_1‖ against t, and ‖∂h_T/∂x_t‖ against steps before the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, flow in curves.items():
        first, last = flow["first"], flow["last"]
        left.semilogy(range(1, len(first) + 1), [max(v, 1e-30) for v in first], label=name)
        right.semilogy(range(len(last) - 1, -1, -1), [max(v, 1e-30) for v in last], label=name)
    left.set(
        xlabel="t (steps since the first input)",
        ylabel="‖∂h_t / ∂x_1‖",
        title="How much of the first input is left in h_t",
    )
    right.set(
        xlabel="steps before the end (T - t)",
        ylabel="‖∂h_T / ∂x_t‖",
        title="How much each input still moves the final state",
    )
    right.invert_xaxis()
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def analyze_gradients(
    folder: Path, review: str | None, compare: list[Path], out_dir: Path, seed: int = 0
) -> dict[str, object]:
    """Gradient flow of the model in ``folder``, of the same model freshly initialised, and of
    the models in ``compare`` (e.g. an LSTM and a GRU), on one review. Writes
    ``gradients.json`` and ``gradients.png`` into ``out_dir``; returns the JSON's content.

    Without ``review``, the first test review of at least 300 words is used."""
    from elman.data.imdb import read_reviews, resolve_source
    from elman.inference import load

    classifier = load(folder)
    if review is None:
        texts = read_reviews(resolve_source(classifier.config.data.data))["test"].texts
        review = next(t for t in texts if len(tokenize(t)) >= 300)
    ids = torch.from_numpy(classifier.encode([review]))[0]
    torch.manual_seed(seed)
    fresh = ReviewClassifier(classifier.config.model)
    models = {
        f"{classifier.config.model.architecture} (trained)": classifier.model,
        f"{classifier.config.model.architecture} (initialised)": fresh,
    }
    for other in compare:
        loaded = load(other)
        models[f"{loaded.config.model.architecture} (trained)"] = loaded.model
    # The models compared were trained on the same archive with the same settings, so they
    # share the vocabulary and read the same ids.
    curves = {name: gradient_flow(model, ids) for name, model in models.items()}
    result = {
        "review": review,
        "curves": curves,
        "summary": {
            name: {"first": decay_summary(flow["first"]), "last": decay_summary(flow["last"][::-1])}
            for name, flow in curves.items()
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "gradients.json", json_bytes(result))
    plot_gradient_flow(curves, str(out_dir / "gradients.png"))
    return result
