"""Reading an input step by step, for any model elman trains: what it would say if the input
stopped after each step, the state it holds there, and how much each step still moves the end.

- ``probabilities``: after step t, the model's output for the input cut after step t (every cut
  in one batch). One definition for every model (one direction or both, any pooling, text or
  numbers); at the last step it is exactly the prediction. The change p_t - p_{t-1} is what step
  t did to the verdict. Two classes: the probability of the second ("positive" for IMDB); more:
  of the class predicted for the whole input.
- ``states``: the recurrent layer's outputs h_1..h_T over the whole input (B, T, W): a
  bidirectional layer's two directions side by side, a stack's top layer, a reservoir's units.
- ``influence``: ‖∂f/∂x_t‖ for each step t, f being what the dense layer reads after the last
  step (the reference model's h_T; the pooled states; a flattening model's h_T) and x_t the
  step's input (a word's embedding, a step's values). Why a simple RNN forgets, as a curve
  (``elman.analysis.gradients`` measures the same for the reference model, exactly).

For text, the reading also says what was not read: words cut to ``max_len``, words outside the
vocabulary (read as one unknown word), symbols that are not words (emoji).
Written as a self-contained HTML page (each word shaded by its change) and a PNG plot of p_t.
"""

from __future__ import annotations

import contextlib
import html
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from elman.data.text import OOV, PAD, not_words, pad_sequences, tokenize
from elman.errors import UserError
from elman.inference import Trained, TrainedClassifier, to_predictions
from elman.models import SequenceModel, skip_missing

MAX_CUTS = 400  # inputs longer than this are cut at this many evenly spaced steps


@dataclass
class Reading:
    words: list[str]  # what each step is: a word read, or (numbers) the step's number from 1
    probabilities: list[float]  # p_t after each step (of ``target``)
    start_probability: float  # after the start token, before any word; NaN: none (numbers)
    states: list[list[float]] = field(default_factory=list)  # h_t after each step (T, W)
    target: str = ""  # the class whose probability is followed
    influence: list[float] = field(default_factory=list)  # ‖∂f/∂x_t‖ per step
    unknown: list[bool] = field(default_factory=list)  # text: the word is not in the vocabulary
    notes: list[str] = field(default_factory=list)  # what was not read, in plain words
    inputs: list[list[float]] = field(default_factory=list)  # numbers: the steps' values (T, F)
    # a forecaster: after each step t, its forecast of step t + 1 (T, F), in the data's units
    forecasts: list[list[float]] = field(default_factory=list)

    def changes(self) -> list[float]:
        if not self.probabilities:  # (a forecaster follows no probability)
            return []
        previous = [self.start_probability, *self.probabilities[:-1]]
        return [p - q for p, q in zip(self.probabilities, previous, strict=True)]

    def record(self) -> dict:
        """The line as JSON takes it (explain.json, POST /explain): words, probabilities,
        changes, start probability (None where NaN: no start token, or its change), the class
        followed, the notes."""

        def finite(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "words": self.words,
            "probabilities": self.probabilities,
            "changes": [finite(change) for change in self.changes()],
            "start_probability": finite(self.start_probability),
            "target": self.target,
            "notes": self.notes,
        }


@contextlib.contextmanager
def every_state(layer: nn.Module) -> Iterator[None]:
    """Within: ``layer`` (and every layer inside it) returns all its states (B, T, W)."""
    changed = [m for m in layer.modules() if getattr(m, "return_sequences", None) is False]
    for module in changed:
        module.return_sequences = True
    try:
        yield
    finally:
        for module in changed:
            module.return_sequences = False


def step_states(model: nn.Module, x: Tensor) -> Tensor | None:
    """The recurrent layer's output at every step (B, T, W): text ids (B, T) (padding
    included, as the model reads it) or values (B, T, F) (the steps read, moved to the front);
    None for a model with no recurrent layer."""
    if model.rnn is None:
        return None
    with torch.no_grad(), every_state(model.rnn):
        if isinstance(model, SequenceModel):
            values, lengths = skip_missing((x - model.mean) / model.std)
            return model.rnn(values, lengths=lengths)
        mask = model.config.mask_padding
        return model.cell.read_words(model.rnn, model.embedding, x, PAD, mask)[0]


def _final_state(model: nn.Module, x: Tensor, embedded: Tensor | None) -> Tensor:
    """What the dense layer reads after the last step (B, W); for a model that reads every
    state flattened (or a forecaster), the top layer's last state."""
    if isinstance(model, SequenceModel):
        features = model.features(x)  # (a forecaster's: every state, (B, T, W))
    else:
        features = model.features(x, embedded)
    return features[:, -1] if features.dim() == 3 else features


def influence(model: nn.Module, x: Tensor) -> list[float]:
    """‖∂f/∂x_t‖ for each step of one input x (1, T) ids or (1, T, F) values: f as
    ``_final_state``; one backward pass, the input repeated once per unit of f."""
    model.eval()
    with torch.no_grad():
        width = _final_state(model, x, None).shape[-1]
    if isinstance(model, SequenceModel):
        inputs = x.repeat(width, 1, 1).requires_grad_()
        final = _final_state(model, inputs, None)
    else:
        with torch.no_grad():
            inputs = model.embedding(x).repeat(width, 1, 1)
        inputs.requires_grad_()
        final = _final_state(model, x.repeat(width, 1), inputs)
    # row i of the repeated batch carries unit i: the sum's gradient is the Jacobian, row by row
    (gradient,) = torch.autograd.grad(final.diagonal().sum(), inputs)
    norms = gradient.double().pow(2).sum(dim=(0, 2)).sqrt()
    return torch.nan_to_num(norms).tolist()


def _target(probabilities: np.ndarray, classes: list[str]) -> tuple[int, str]:
    """Which class the line follows: the second of two, else the one finally predicted."""
    if len(classes) == 2:
        return 1, classes[1]
    best = int(probabilities[-1].argmax())
    return best, classes[best]


def _followed(probabilities: np.ndarray, column: int) -> np.ndarray:
    return probabilities if probabilities.ndim == 1 else probabilities[:, column]


def _cut_at(steps: int) -> np.ndarray:
    """The steps (from 0) after which the input is cut: all, or MAX_CUTS evenly spaced."""
    if steps <= MAX_CUTS:
        return np.arange(steps)
    return np.unique(np.linspace(0, steps - 1, MAX_CUTS).round().astype(int))


def _at_every_step(values: np.ndarray, cuts: np.ndarray, steps: int) -> list[float]:
    """Values measured after the ``cuts`` -> one per step (linear between cuts)."""
    return np.interp(np.arange(steps), cuts, values).tolist()


def read_text(classifier: TrainedClassifier, text: str) -> Reading:
    """``text`` read word by word by the text model (see the module docstring)."""
    tokens = tokenize(text)
    if not tokens:
        raise UserError("this text has no words: type or paste a review")
    vocabulary = classifier.vocabulary
    ids = vocabulary.encode(tokens)  # START, then a word id (or OOV) per token
    if all(i == OOV for i in ids[1:]):
        raise UserError(
            f"none of its {len(tokens):,} words is among the {len(vocabulary):,} words the model "
            "knows: give text in the language of its training texts"
        )
    max_len, data = classifier.config.model.max_len, classifier.config.data
    kept = ids[-max_len:] if data.truncating == "pre" else ids[:max_len]
    first = len(ids) - len(kept) if data.truncating == "pre" else 0  # index in ids of kept[0]
    notes = _text_notes(text, len(ids), kept, data.truncating, max_len)
    starts = first == 0  # (kept[0] is the start token)
    prefixes = [kept[: n + 1] for n in range(len(kept))]
    rows, _ = pad_sequences(prefixes, max_len, data.padding, data.truncating)
    probabilities = classifier.probabilities(rows)
    column, target = _target(probabilities, classifier.config.classes)
    followed = _followed(probabilities, column).tolist()
    row = torch.from_numpy(rows[-1:])
    states = step_states(classifier.model, row)
    where = slice(max_len - len(kept), max_len) if data.padding == "pre" else slice(0, len(kept))
    skip = 1 if starts else 0  # the start token is no word: its state is the line's start
    words = tokens[first + skip - 1 : first + len(kept) - 1]  # (ids[i] is tokens[i - 1])
    return Reading(
        words=words,
        probabilities=followed[skip:],
        start_probability=followed[0] if starts else math.nan,
        states=[] if states is None else states[0, where][skip:].tolist(),
        target=target,
        influence=influence(classifier.model, row)[where][skip:],
        unknown=[i == OOV for i in kept[skip:]],
        notes=notes,
    )


def _text_notes(text: str, count: int, kept: list[int], truncating: str, max_len: int) -> list[str]:
    """What of ``text`` (``count`` ids, the start token's included) the model did not read,
    in plain words."""
    notes = []
    cut = count - len(kept) - (1 if truncating == "pre" else 0)  # words (not the start token)
    if count > len(kept):
        which, end = ("first", "last") if truncating == "pre" else ("last", "first")
        notes.append(
            f"the {which} {cut:,} words were not read: the model keeps the {end} {max_len}"
        )
    unknown = sum(i == OOV for i in kept)
    if unknown:
        notes.append(
            f"{unknown:,} word{'s are' if unknown > 1 else ' is'} not in the model's vocabulary "
            "(marked): it reads each as the same unknown word"
        )
    symbols = not_words(text)
    if symbols:
        shown = " ".join(dict.fromkeys(symbols))
        notes.append(f"{len(symbols):,} symbols are not words and were skipped: {shown}")
    return notes


def read_values(trained: Trained, values: np.ndarray) -> Reading:
    """One series (T, F) (NaN: a missing step) read step by step by a model of numbers: a
    classifier's probability after each cut, or a forecaster's forecast after each step."""
    model = trained.model.eval()
    present = ~np.isnan(values).any(-1)
    series = values[present]  # (the model skips missing steps: so does the reading)
    steps = len(series)
    x = torch.from_numpy(series[None].astype(np.float32))
    states = step_states(model, x)
    notes = [] if present.all() else [f"{int((~present).sum()):,} steps without values skipped"]
    reading = Reading(
        words=[str(t) for t in range(1, steps + 1)],
        probabilities=[],
        start_probability=math.nan,
        states=[] if states is None else states[0].tolist(),
        influence=influence(model, x),
        notes=notes,
        inputs=series.tolist(),
    )
    if model.task == "forecast":
        with torch.no_grad():
            reading.forecasts = model.to_values(model(x)[0]).tolist()
        reading.target = "the next value"
        return reading
    cuts = _cut_at(steps)
    rows = np.full((len(cuts), steps, values.shape[1]), np.nan, dtype=np.float32)
    for row, cut in enumerate(cuts):
        rows[row, : cut + 1] = series[: cut + 1]
    probabilities = trained.probabilities(rows)
    column, reading.target = _target(probabilities, trained.config.classes)
    reading.probabilities = _at_every_step(_followed(probabilities, column), cuts, steps)
    if len(cuts) < steps:
        notes.append(f"the line is measured after {len(cuts)} of the {steps:,} steps")
    return reading


def read_word_by_word(classifier: TrainedClassifier, text: str) -> Reading:
    """The text's reading (``read_text``); kept under its first name."""
    return read_text(classifier, text)


def holding_steps(states: np.ndarray) -> np.ndarray:
    """How many steps each unit of ``states`` (T, W) holds its value: 1 / (1 - r), r the
    correlation of the unit with itself one step later (0 or less: 1 step; constant: T)."""
    steps = len(states)
    if steps < 3:
        return np.ones(states.shape[1])
    now, later = states[:-1] - states[:-1].mean(0), states[1:] - states[1:].mean(0)
    spread = np.sqrt((now**2).sum(0) * (later**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(spread > 1e-12, (now * later).sum(0) / spread, 1.0)
        held = np.where(r >= 1, steps, 1 / (1 - np.clip(r, 0, 1)))
    return np.minimum(held, steps)


def prediction_of(reading: Reading, classes: list[str]) -> dict:
    """The whole input's label and probability (as POST /predict gives them); a forecaster's
    forecast of the step after the last."""
    if reading.forecasts:
        return {"label": "the next value", "forecast": reading.forecasts[-1]}
    last = reading.probabilities[-1]
    if len(classes) == 2:
        (prediction,) = to_predictions(np.array([last]), classes)
        return {"label": prediction.label, "probability": prediction.probability}
    return {"label": reading.target, "probability": last}


def write_html(reading: Reading, path: Path, title: str = "elman explain") -> None:
    """A self-contained page: each word shaded blue (pushed towards the followed class) or
    orange (away from it)."""
    spans = []
    for word, change, probability in zip(
        reading.words, reading.changes(), reading.probabilities, strict=True
    ):
        change = 0.0 if math.isnan(change) else change
        strength = min(abs(change) / 0.15, 1.0) * 0.6
        colour = (
            f"rgba(33,102,172,{strength:.2f})" if change > 0 else f"rgba(230,97,1,{strength:.2f})"
        )
        spans.append(
            f'<span style="background:{colour}" title="p={probability:.3f} '
            f'({change:+.3f})">{html.escape(word)}</span>'
        )
    final = reading.probabilities[-1] if reading.probabilities else float("nan")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.9}}
span{{padding:0.1em 0.15em;border-radius:0.2em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Final probability of <b>{html.escape(reading.target)}</b>: {final:.3f}. Each word is shaded by
how much it moved that probability when the model read it (blue: towards it, orange: away);
hover for the value.</p>
<p>{" ".join(spans)}</p></body></html>
"""
    Path(path).write_text(page, encoding="utf-8")


def plot_reading(reading: Reading, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 3.5), constrained_layout=True)
    axis.plot(range(1, len(reading.probabilities) + 1), reading.probabilities, lw=1.5)
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set(
        xlabel="words read",
        ylabel=f"P({reading.target})",
        ylim=(0, 1),
        title="The verdict as the review is read",
    )
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def explain(folder: Path, text: str, out_dir: Path) -> Reading:
    """Read ``text`` with the model in ``folder``; write explain.html, explain.png and
    explain.json into ``out_dir``."""
    from elman.files import atomic_write, json_bytes
    from elman.inference import load

    trained = load(folder)
    if not trained.config.reads_text:
        raise UserError("elman explain reads text; this model reads numbers: use elman serve")
    reading = read_text(trained, text)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_html(reading, out_dir / "explain.html")
    plot_reading(reading, out_dir / "explain.png")
    atomic_write(out_dir / "explain.json", json_bytes(reading.record()))
    return reading


__all__ = ["Reading", "read_text", "read_values", "read_word_by_word"]
