"""How a configuration field is declared: its default and a one-line doc, from which the command
line makes the flag and its help (``elman.cli``). Used by ``elman.config`` and by each data
source's own configuration (``elman.data``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, field, fields
from typing import Any

from elman.errors import UserError


def setting(default: Any, doc: str, *, flag: str | None = None, choices=None, cli: bool = True):
    """A dataclass field with its one-line ``doc`` (the flag's help), the flag's name when it
    is not the field's (``--model`` for ``architecture``), its ``choices``, and ``cli=False``
    for a value the data decides (not an option)."""
    metadata = {"doc": doc, "flag": flag, "choices": choices, "cli": cli}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def defaults(cls: type) -> dict[str, Any]:
    """Each field's default value."""
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls)
    }


def choose(value: str, choices: Sequence[str], what: str) -> None:
    """Refuse ``value`` unless it is one of ``choices``, naming the setting ``what``."""
    if value not in choices:
        raise UserError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
