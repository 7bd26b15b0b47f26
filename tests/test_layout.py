"""The shape of the package: no import cycle, kernels behind one dispatch, the data source never
switched on by name, short functions, and a light ``import elman``."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import elman

PACKAGE = Path(elman.__file__).parent
MODULES = {
    ".".join(("elman", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
        ".__init__"
    ): path
    for path in PACKAGE.rglob("*.py")
}
# Functions allowed over 60 lines, and why (the README's layout section says the same).
LONG_FUNCTIONS: dict[str, str] = {}


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, at any depth: a function's lazy import and
    an import under ``if TYPE_CHECKING`` count too (a circle of types is a circle of design)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


def test_no_import_cycle():
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            assert state.get(other) != "open", " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


# The leaves: what each may import of the package (its own folder, and these).
LEAVES = {
    "elman.data": ("elman.data", "elman.errors", "elman.files", "elman.settings", "elman.threads"),
    "elman.config": (
        "elman.cells",
        "elman.errors",
        "elman.files",
        "elman.kernels",
        "elman.settings",
        "elman.version",
    ),
}


def test_data_and_config_are_leaves():
    """A source reads its own settings and an ``Encoding``, and returns what it learned as a
    value: ``elman.data`` imports no configuration, model, trainer or inference module, and
    ``elman.config`` imports no data source (``elman.runs`` joins the two registries)."""
    for leaf, allowed in LEAVES.items():
        for name, path in MODULES.items():
            if name == leaf or name.startswith(leaf + "."):
                outside = {m for m in _imports(path) if not m.startswith(allowed)}
                assert not outside, (name, sorted(outside))


def test_kernels_are_reached_only_through_the_dispatch():
    """Outside elman.kernels, only the dispatch (elman.kernels) and the reference formula and
    loop (elman.kernels.reference) are imported: never a kernel module itself."""
    for name, path in MODULES.items():
        if name.startswith("elman.kernels"):
            continue
        kernels = {m for m in _imports(path) if m.startswith("elman.kernels.")}
        assert kernels <= {"elman.kernels.reference"}, (name, kernels)


def test_no_switch_on_a_source_name_outside_the_registry():
    pattern = re.compile(r"source\s*(==|!=|in\s*\()|==\s*\"(imdb|text|series|speech)\"")
    for name, path in MODULES.items():
        if name == "elman.data":  # the registry itself
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{name}:{number}: {line.strip()}"


def test_no_switch_on_a_cell_kind_outside_the_registry():
    """Models, checks, export and analysis ask the kind (``elman.cells``) what it can do: no
    comparison with a kind's name, list of names or cell class outside the registry."""
    pattern = re.compile(
        r"architecture\s*(==|!=|in\b|not in\b)|\"(lstm|gru|rnn-all-states|shallow)\""
        r"|isinstance\([^)]*(SimpleRNN|GatedRNN|Stacked|Bidirectional)|nn\.(LSTM|GRU)"
    )
    for name, path in MODULES.items():
        if name.startswith("elman.cells"):
            continue
        for number, line in _code_lines(path):
            assert not pattern.search(line), f"{name}:{number}: {line.strip()}"


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(number, line) of ``path``'s code: docstrings left out (they may name what they like)."""
    source = path.read_text()
    prose: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                prose.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = enumerate(source.splitlines(), 1)
    return [(n, line) for n, line in lines if n not in prose and not line.lstrip().startswith("#")]


def test_functions_are_short():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                qualified = f"{name}.{node.name}"
                assert lines <= 60 or qualified in LONG_FUNCTIONS, f"{qualified}: {lines} lines"


def test_import_elman_is_light():
    code = (
        "import sys, elman; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numba', 'librosa', 'matplotlib', 'safetensors', 'torchinfo', 'pooch') "
        "or m.startswith(('elman.data', 'elman.train', 'elman.inference', 'elman.models'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_loading_and_predicting_import_no_training_module(tmp_path):
    """Inference stands apart from training: ``elman.load`` and ``predict`` on a saved folder
    import neither the trainer, the workers' module nor the encoded shards."""
    from conftest import save_small_model

    save_small_model(tmp_path / "model")
    code = (
        "import sys, elman; "
        f"elman.load({str(tmp_path / 'model')!r}).predict(['a great film']); "
        "print(sorted(m for m in sys.modules if m in "
        "('elman.train', 'elman.distributed', 'elman.data.shards', 'elman.workflow')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
