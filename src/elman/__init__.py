"""elman: simple recurrent (Elman) networks on PyTorch."""

from elman.rnn import SimpleRNN

__version__ = "0.1.0"
__all__ = ["SimpleRNN", "__version__"]
