"""Where a printed figure comes from: the command, the commit, the machine and the date, in one
Markdown line that every benchmark prints above its tables (the docs include that output as it
is, so each figure names its provenance).

    python benchmarks/report.py      # this checkout and machine, as the benchmarks print them
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit(root: Path = ROOT) -> str:
    """The commit of the checkout at ``root`` (this one by default), short, with ``-dirty`` when
    its code (``src/``, ``benchmarks/``) differs from it: a figure measured on uncommitted code
    says so."""
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    name = found.stdout.strip() or "unknown"
    changed = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "src", "benchmarks"],
        capture_output=True,
        text=True,
    )
    return name + ("-dirty" if changed.stdout.strip() else "")


def machine() -> str:
    """The CPU model (with its family and model numbers), the cores this process may use, and
    the GPU when one is there: e.g. ``AMD EPYC 9R14 (family 25 model 17), 2 cores``."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name", "unknown CPU")
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    described = f"{model}, {cores} cores"
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            described += f", {torch.cuda.get_device_name()}"
    return described


def checkouts(against: Path | None) -> dict[str, Path]:
    """The ``src`` folders a side-by-side benchmark runs: this checkout's and, given, another's
    (``--against``)."""
    return {"this": ROOT / "src"} | ({"against": against.resolve()} if against else {})


def running(source: Path) -> dict[str, str]:
    """The environment of a new process that imports the ``elman`` in ``source`` first."""
    path = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def provenance(argv: list[str] | None = None) -> str:
    """One Markdown line: the command that printed a table, its commit, machine and date."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(ROOT)
    command = shlex.join(["python", str(script), *argv[1:]])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return f"_`{command}` at commit {commit()}; {machine()}; {date}._"


if __name__ == "__main__":
    print(provenance())
