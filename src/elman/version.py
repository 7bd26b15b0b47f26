"""The version of elman, recorded in every saved model folder."""

__version__ = "0.1.0"
