"""Where else does the model's state do this? (LSTMVis's match view.)

Choose a span of steps and some hidden units of one reading; ``StateIndex.search`` finds the spans
as long, over the same units, in the model's test data whose states are nearest (the mean squared
difference), one per sample, best first. The index holds the recurrent layer's output at every
step (``elman.analysis.explain.step_states``) of up to ``limit`` test samples, as float16: 1,000
reviews of 500 steps × 32 units are 32 MB, and a search reads only the chosen units.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from elman.analysis.explain import step_states
from elman.data.text import PAD, START
from elman.inference import Trained

CONTEXT = 6  # words shown either side of a text match


@dataclass
class StateIndex:
    states: np.ndarray  # (N, T, W) float16: every step's state
    read: np.ndarray  # (N, T) bool: the step holds an input (not padding)
    labels: list[str]  # each sample's class
    ids: np.ndarray | None = None  # text: the token ids (N, T), to show the matched words
    words: list[str] | None = None  # text: the vocabulary, id -> word

    @classmethod
    def build(
        cls,
        trained: Trained,
        x: np.ndarray,
        y: np.ndarray,
        limit: int = 1000,
        guard: AbstractContextManager | None = None,
    ):
        """The index of up to ``limit`` samples of ``x`` (ids (N, T) or values (N, T, F)), as
        many of each class as can be, in their order. ``guard`` (a lock) is held while the
        model reads each 200 of them."""
        rows = balanced(np.asarray(y), limit)
        chosen, labels = x[rows], [trained.config.classes[int(c)] for c in np.asarray(y)[rows]]
        parts = []
        for i in range(0, len(chosen), 200):
            with guard or contextlib.nullcontext():
                states = step_states(trained.model, torch.from_numpy(chosen[i : i + 200]))
            parts.append(states.half().numpy())
        states = np.concatenate(parts)
        if not trained.config.reads_text:  # the steps read are moved to the front
            lengths = (~np.isnan(chosen).any(-1)).sum(1)
            read = np.arange(states.shape[1])[None, :] < lengths[:, None]
            return cls(states, read, labels)
        words = list(trained.vocabulary.words)
        return cls(states, chosen != PAD, labels, chosen, words)

    def search(self, pattern: np.ndarray, units: list[int], top: int = 8) -> list[dict]:
        """The ``top`` spans nearest to ``pattern`` (L steps, len(units)) over ``units``: one per
        sample, as {"sample", "label", "start" (the span's first step read, from 1), "distance"}
        and for text the words around it ({"before", "span", "after"})."""
        span = len(pattern)
        steps = self.states.shape[1]
        if span > steps:
            return []
        chosen = self.states[:, :, units].astype(np.float32)
        distance = np.zeros((len(chosen), steps - span + 1), dtype=np.float32)
        for offset in range(span):
            window = chosen[:, offset : offset + steps - span + 1]
            distance += ((window - pattern[offset]) ** 2).sum(-1)
        distance /= pattern.size
        # a span that covers padding matches nothing
        unread = np.cumsum(np.pad(~self.read, ((0, 0), (1, 0))), axis=1, dtype=np.int32)
        distance[(unread[:, span:] - unread[:, :-span]) > 0] = np.inf
        best_start = distance.argmin(1)
        best = distance[np.arange(len(distance)), best_start]
        order = [i for i in np.argsort(best, kind="stable")[:top] if np.isfinite(best[i])]
        return [self._match(int(i), int(best_start[i]), float(best[i]), span) for i in order]

    def _match(self, sample: int, start: int, distance: float, span: int) -> dict:
        first = int(np.argmax(self.read[sample]))  # the sample's first step read
        if self.ids is not None and self.ids[sample, first] == START:  # (no word: not shown)
            first += 1
        found = {
            "sample": sample,
            "label": self.labels[sample],
            "start": start - first + 1,  # (text: from its first word)
            "distance": round(distance, 5),
        }
        if self.ids is not None:
            row = [self.words[i] for i in self.ids[sample]]
            found["before"] = " ".join(row[max(first, start - CONTEXT) : start])
            found["span"] = " ".join(row[start : start + span])
            found["after"] = " ".join(row[start + span : start + span + CONTEXT])
        return found


def balanced(labels: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` indices, taking each class's first ones in turn (sorted)."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    taken = []
    for rank in range(max((len(rows) for rows in by_class), default=0)):
        taken += [rows[rank] for rows in by_class if rank < len(rows)]
        if len(taken) >= limit:
            break
    return np.sort(np.array(taken[:limit], dtype=np.int64))
