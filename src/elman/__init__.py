"""elman: simple recurrent (Elman) networks on PyTorch."""

__version__ = "0.1.0"

from elman.bundle import load  # noqa: E402  (the bundle records __version__)
from elman.rnn import SimpleRNN  # noqa: E402

__all__ = ["SimpleRNN", "__version__", "load"]
