"""The registry of cell kinds: each kind is one module (``simple``, ``gated``, ``shallow``,
``indrnn``, ``reservoir``) and one entry here. ``--model NAME`` picks ``CELLS[NAME]``; models,
checks, export and analysis ask the kind what it can do (``elman.cells.kind.CellKind``) and
never branch on its name.

A new kind of cell is a module that defines a ``CellKind`` plus ``register(KIND)`` (or a line
below): the settings' choices, the checks, the model and the summary pick it up.
"""

from __future__ import annotations

from elman.cells import gated, indrnn, reservoir, shallow, simple
from elman.cells.kind import CellKind, LayerSettings, to_front
from elman.errors import UserError
from elman.rnn import INITS
from elman.settings import choose

__all__ = [
    "CELLS",
    "DEFAULT_CELL",
    "INITS",
    "CellKind",
    "LayerSettings",
    "check",
    "check_chunks",
    "describe",
    "kind_of",
    "names",
    "register",
    "to_front",
]

CELLS: dict[str, CellKind] = {}
DEFAULT_CELL = "rnn"  # the reference model's


def register(kind: CellKind) -> CellKind:
    """Add ``kind`` to the registry (a new name only)."""
    if kind.name in CELLS:
        raise ValueError(f"a cell kind named {kind.name!r} is registered already")
    CELLS[kind.name] = kind
    return kind


_KINDS = (simple.RNN, simple.ALL_STATES, shallow.SHALLOW, gated.LSTM, gated.GRU, indrnn.INDRNN)
for _kind in (*_KINDS, reservoir.ESN):
    register(_kind)


def names(texts: bool = True) -> tuple[str, ...]:
    """The kinds a text model (``texts``) or a numeric-sequence model can use."""
    return tuple(
        name
        for name, kind in CELLS.items()
        if not (kind.numbers_only if texts else kind.texts_only)
    )


def describe(texts: bool = True) -> str:
    """A line for the ``architecture`` setting's help: each kind's name and phrase."""
    return "; ".join(f"{name}: {CELLS[name].help}" for name in names(texts))


def kind_of(name: str, texts: bool = True) -> CellKind:
    """The kind named ``name`` (the ``architecture`` setting)."""
    choose(name, names(texts), "architecture")
    return CELLS[name]


def check(settings: LayerSettings, name: str, *, texts: bool, forecast: bool = False) -> None:
    """The layer ``settings`` against what kind ``name`` accepts (one-line UserErrors that
    name the setting)."""
    kind = kind_of(name, texts)
    if settings.pooling != "last" and (not kind.pools or forecast):
        raise UserError(
            f"pooling {settings.pooling} reads the states of a recurrent layer classifying "
            f"(the {name} model {'forecasts' if forecast else 'does not pool its states'}): "
            "use `pooling` last"
        )
    dropping = (settings.dropout, settings.recurrent_dropout) != (0.0, 0.0)
    if (settings.layers != 1 and not (kind.stacks or kind.deep)) or (dropping and not kind.stacks):
        takes = "takes `layers` only" if kind.deep else "takes none of them"
        raise UserError(
            "`layers`, `dropout` and `recurrent_dropout` shape the simple RNN: "
            f"the {name} model {takes}"
        )
    if settings.init != "keras" and not kind.inits:
        raise UserError(
            f"`init` {settings.init} starts a simple RNN's matrix A: the {name} model has none "
            "(use `init` keras)"
        )
    if settings.bidirectional and not kind.bidirectional:
        raise UserError(f"`bidirectional` reads with an RNN: the {name} model has none")
    if settings.bidirectional and forecast:
        raise UserError("a forecaster cannot read backwards: the future would leak in")


def check_chunks(settings: LayerSettings, name: str) -> None:
    """Truncated backpropagation through time reads a chunk at a time from a given state: one
    layer of a kind that can, read forwards, its last state out."""
    kind = CELLS.get(name)
    if (
        kind is None
        or not kind.chunks
        or settings.layers != 1
        or settings.bidirectional
        or (settings.pooling != "last")
    ):
        can = " or ".join(n for n, k in CELLS.items() if k.chunks)
        raise UserError(
            f"`tbptt` needs one recurrent layer read forwards (`architecture` {can}, `layers` 1, "
            "no `bidirectional`, `pooling` last)"
        )
