"""The documentation: the site builds without a warning, the README stays a front door, and every
table the docs include names the command, commit, machine and date that printed it."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PROVENANCE = re.compile(
    r"^_`python benchmarks/\w+\.py[^`]*` at commit [0-9a-f]{7,}(-dirty)?; .+, \d+ cores.*; "
    r"\d{4}-\d{2}-\d{2}(; [^`]+)?\._$"  # (then what else it ran on, e.g. a library's version)
)
INCLUDE = re.compile(r"```\{include\} (\S+)")


def test_the_site_builds_without_a_warning(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
         str(tmp_path / "html")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    pages = {p.stem for p in (tmp_path / "html").glob("*.html")}
    assert {"index", "getting-started", "lecture", "api", "results", "speed"} <= pages
    api = (tmp_path / "html" / "api.html").read_text()
    assert "SimpleRNN" in api and "return_sequences" in api  # generated from the docstrings


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.M)
    assert len(commands) == 2 and "elman train imdb" in commands[0]
    assert commands[1].split("&& ", 1)[1] in (ROOT / ".ci" / "run").read_text()
    assert commands == re.findall(
        r"^python3 -m venv .*$", (DOCS / "getting-started.md").read_text(), flags=re.M
    )


def test_every_included_table_names_where_it_comes_from():
    included = set()
    for page in DOCS.glob("*.md"):
        for target in INCLUDE.findall(page.read_text()):
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name} includes {target}, which is missing"
            included.add(path)
    assert included == {p.resolve() for p in (DOCS / "results").glob("*.md")}
    for table in included:
        first = table.read_text().splitlines()[0]
        assert PROVENANCE.match(first), f"{table.name}: {first}"
        assert "-dirty" not in first, f"{table.name} was measured on uncommitted code"
