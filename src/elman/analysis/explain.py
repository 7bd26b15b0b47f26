"""Reading a review word by word: the classifier head applied to every state h_t.

The reference classifier only looks at h_T, but its dense layer can read any h_t: p_t =
sigmoid(dense(h_t)) is what the model would say if the review stopped after word t. The change
p_t - p_{t-1} is what word t did to the verdict. Written as a self-contained HTML page (each word
coloured by its change) and a PNG plot of p_t against t.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elman.data.text import PAD, tokenize
from elman.errors import UserError
from elman.inference import TrainedClassifier


@dataclass
class Reading:
    words: list[str]  # the words the model read, in order (after the start token)
    probabilities: list[float]  # p_t after each word
    start_probability: float  # after the start token, before any word
    states: list[list[float]] = field(default_factory=list)  # h_t after each word (words, H)

    def changes(self) -> list[float]:
        previous = [self.start_probability, *self.probabilities[:-1]]
        return [p - q for p, q in zip(self.probabilities, previous, strict=True)]


def read_word_by_word(classifier: TrainedClassifier, text: str) -> Reading:
    """The positive-class probability after each word of ``text``, as the model reads it."""
    model = classifier.model
    if model.rnn is None or model.rnn.return_sequences:
        raise UserError("explain needs a model that reads the last RNN state (--model rnn)")
    if not hasattr(model.rnn, "states"):  # a stack or two directions: no one state per word
        raise UserError(
            "explain follows one recurrent layer read forwards; this model stacks layers or "
            "reads both ways (train one with --layers 1, no --bidirectional)"
        )
    if model.classes != 2:
        raise UserError(
            f"explain follows one probability (two classes); this model has "
            f"{model.classes}: use elman predict"
        )
    ids = torch.from_numpy(classifier.encode([text]))  # (1, T), as in training
    with torch.no_grad():
        model.eval()
        states = model.all_states(ids)[0]  # (T, H)
        probabilities = torch.sigmoid(model.dense(states).squeeze(-1))
    start = int((ids[0] != PAD).nonzero()[0])
    kept = len(ids[0]) - start - 1  # words after the start token, as cut to max_len
    words = tokenize(text)[-kept:] if kept > 0 else []
    if ids[0, start].item() != 1:  # the start token was cut off: every position is a word
        words = tokenize(text)[-(len(ids[0]) - start) :]
        return Reading(words, probabilities[start:].tolist(), float("nan"), states[start:].tolist())
    return Reading(
        words,
        probabilities[start + 1 :].tolist(),
        float(probabilities[start]),
        states[start + 1 :].tolist(),
    )


def write_html(reading: Reading, path: Path, title: str = "elman explain") -> None:
    """A self-contained page: each word shaded green (pushed towards positive) or red."""
    spans = []
    for word, change, probability in zip(
        reading.words, reading.changes(), reading.probabilities, strict=True
    ):
        strength = min(abs(change) / 0.15, 1.0)
        colour = f"rgba(0,160,0,{strength:.2f})" if change > 0 else f"rgba(220,0,0,{strength:.2f})"
        spans.append(
            f'<span style="background:{colour}" title="p={probability:.3f} '
            f'({change:+.3f})">{html.escape(word)}</span>'
        )
    final = reading.probabilities[-1] if reading.probabilities else float("nan")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.9}}
span{{padding:0.1em 0.15em;border-radius:0.2em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Final probability of <b>positive</b>: {final:.3f}. Each word is coloured by how much it moved
that probability when the model read it (green: towards positive, red: towards negative); hover
for the value.</p>
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
        ylabel="P(positive)",
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

    reading = read_word_by_word(load(folder), text)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_html(reading, out_dir / "explain.html")
    plot_reading(reading, out_dir / "explain.png")
    record = {
        "words": reading.words,
        "probabilities": reading.probabilities,
        "changes": reading.changes(),
        "start_probability": reading.start_probability,
    }
    atomic_write(out_dir / "explain.json", json_bytes(record))
    return reading
