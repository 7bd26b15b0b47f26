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


def _fits(value: Any, kind: str) -> bool:
    """Whether ``value`` (from JSON) is of the declared type ``kind`` (the annotation's text)."""
    options = [option.strip() for option in kind.split("|")]
    if value is None:
        return "None" in options
    for option in options:
        base = option.split("[")[0]
        if base == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if base == "int" and isinstance(value, int):
            return True
        if base == "float" and isinstance(value, int | float):
            return True
        if base == "str" and isinstance(value, str):
            return True
        if base in ("list", "tuple") and isinstance(value, list | tuple):
            element = option[option.index("[") + 1 :].split(",")[0].rstrip("]").strip()
            return all(_fits(item, element) for item in value)
    return False


def typed(cls: type, values: Any, where: str) -> Any:
    """``cls(**values)`` for values read from a file, refusing (with a UserError naming
    ``where`` and the field) anything that is not a mapping of its fields to values of the
    declared types."""
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a mapping of settings, got {type(values).__name__}")
    names = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        if name not in names:
            raise UserError(f"{where}: {name!r} is not a setting elman knows")
        if not _fits(value, str(names[name].type)):
            raise UserError(f"{where}: {name} must be {names[name].type}, got {json_text(value)}")
    tuples = {k for k in values if str(names[k].type).startswith("tuple")}
    return cls(**{k: tuple(v) if k in tuples else v for k, v in values.items()})


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)[:40]
