"""elman: simple recurrent (Elman) networks on PyTorch.

``import elman`` loads the layer only; ``elman.load`` (a saved model) brings in the rest when
first used, so the data, training, plotting and audio stacks stay out of a user's import."""

from __future__ import annotations

from typing import Any

from elman.rnn import RNN, Bidirectional, SimpleRNN, Stacked
from elman.version import __version__

__all__ = ["RNN", "Bidirectional", "SimpleRNN", "Stacked", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from elman.inference import load

        return load
    raise AttributeError(f"module 'elman' has no attribute {name!r}")
