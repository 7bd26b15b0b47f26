"""How a configuration field is declared: its default and a one-line doc, from which the command
line makes the flag and its help (``elman.cli``). Used by ``elman.config`` and by each data
source's own configuration (``elman.data``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, fields
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


def choose(value: str, choices: Sequence[str], what: str) -> None:
    """Refuse ``value`` unless it is one of ``choices``, naming the setting ``what``."""
    if value not in choices:
        raise UserError(f"`{what}` must be one of {', '.join(choices)}, got {value!r}")


def kind_of(annotation: Any) -> tuple[str, str | None, bool]:
    """A field's declared type (its annotation's text, as ``from __future__ import annotations``
    leaves it) as (base, element, optional): ``"int | None"`` -> ("int", None, True),
    ``"tuple[int, ...]"`` -> ("tuple", "int", False). The command line's option types and the
    check of saved values both read it."""
    options = [option.strip() for option in str(annotation).split("|")]
    main = next(option for option in options if option != "None")
    base, _, inside = main.partition("[")
    element = inside.split(",")[0].rstrip("]").strip() or None
    return base, element, "None" in options


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (from JSON) is of the declared type ``annotation``."""
    base, element, optional = kind_of(annotation)
    if value is None:
        return optional
    if isinstance(value, bool):
        return base == "bool"
    if base in ("list", "tuple"):
        return isinstance(value, list | tuple) and all(_fits(item, element) for item in value)
    kinds = {"int": int, "float": int | float, "str": str}
    return base in kinds and isinstance(value, kinds[base])


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
        if not _fits(value, names[name].type):
            raise UserError(f"{where}: {name} must be {names[name].type}, got {json_text(value)}")
    tuples = {k for k in values if kind_of(names[k].type)[0] == "tuple"}
    return cls(**{k: tuple(v) if k in tuples else v for k, v in values.items()})


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)[:40]
