"""``python -m elman``: the command line (what ``torchrun -m elman`` starts in each worker)."""

from elman.cli import command_line

command_line()
