"""The package's shape in numbers (issue 26): lines per module, the places that switch on the
kind of cell, and the elman modules that loading a saved model and predicting import.

    python benchmarks/layout.py [SRC]     # SRC: a checkout's src/ (default: this one's)

A "switch on the kind of cell" is a line of code outside the cell registry (``elman/cells/``)
that compares an architecture or cell name, lists the names, names a cell's torch class, or asks
``isinstance`` of a layer class: each is a place a new cell would have to be added by hand.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SWITCH = re.compile(
    r"(architecture|\bkind|\blayer)\s*(==|!=|not in|in)\s*[(\"A-Z]"
    r"|\bGATED\b|\b(ARCHITECTURES|SEQUENCE_ARCHITECTURES)\b"
    r"|\"(lstm|gru|rnn|rnn-all-states|shallow)\""
    r"|isinstance\([^)]*(SimpleRNN|GatedRNN|Stacked|Bidirectional)"
    r"|LSTMCell|GRUCell|nn\.LSTM\b|nn\.GRU\b"
)
NOT_A_SWITCH = re.compile(r"^\s*(for |#)|dtype\.kind|kind\.__name__|def \w+\(|\"omp\"")


def docstring_lines(source: str) -> set[int]:
    """Line numbers of the docstrings (prose, not code)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def switches(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        if "cells" in path.relative_to(package).parts[:1]:
            continue  # the registry: the one place that may name cells
        source = path.read_text()
        prose = docstring_lines(source)
        for number, line in enumerate(source.splitlines(), 1):
            if number in prose:
                continue
            if SWITCH.search(line) and not NOT_A_SWITCH.search(line):
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    return found


def imported_by_load_and_predict(src: Path) -> list[str]:
    """The elman modules a fresh process imports to load a small saved model and predict."""
    script = f"""
import sys, tempfile
sys.path.insert(0, {str(src)!r})
import torch
from pathlib import Path
folder = Path(tempfile.mkdtemp()) / "model"
sys.path.insert(0, {str(src.parent / "tests")!r})
from conftest import save_small_model
save_small_model(folder)
for name in [m for m in sys.modules if m.startswith("elman")]:
    del sys.modules[name]
import elman
elman.load(folder).predict(["a great film"])
print("\\n".join(sorted(m for m in sys.modules if m.startswith("elman"))))
"""
    with tempfile.TemporaryDirectory():
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if result.returncode:
        return [f"(failed: {result.stderr.strip().splitlines()[-1]})"]
    return result.stdout.split()


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "src").resolve()
    package = src / "elman"
    print("lines per module:")
    total = 0
    for path in sorted(package.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        total += lines
        print(f"  {lines:5d}  {path.relative_to(package)}")
    print(f"  {total:5d}  total")
    found = switches(package)
    print(f"\nplaces that switch on the kind of cell (outside cells/): {len(found)}")
    for line in found:
        print("  " + line)
    modules = imported_by_load_and_predict(src)
    print(f"\nelman modules imported by elman.load + predict: {len(modules)}")
    print("  " + " ".join(modules))


if __name__ == "__main__":
    main()
