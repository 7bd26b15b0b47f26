"""How far back each cell remembers, on the field's standard long-memory tasks.

    python benchmarks/tasks.py --out docs/lecture

Runs ``elman analyze tasks`` with its defaults (``elman.analysis.tasks`` states the tasks and
the protocol: one budget per task, length and cell on this machine) and prints, as Markdown with
the command, commit, machine and date above: the longest T each cell solved, every run, and the
sum of the per-run budgets. The plot (tasks.png: adding MSE and copy recall against T, and the
gradient norms ‖∂h_T/∂x_t‖ of each cell at initialisation and after training) goes to ``--out``.
16 minutes on the 2-core development machine (the budget caps it near 30).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from elman.analysis.tasks import TasksConfig, analyze_tasks, format_tables

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/lecture"), help="plot folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/tasks"), help="json, md")
    args = parser.parse_args(argv)
    config = TasksConfig()
    started = time.perf_counter()
    result = analyze_tasks(config, args.runs, log=lambda line: print(line, file=sys.stderr))
    minutes = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tasks.png").write_bytes((args.runs / "tasks.png").read_bytes())
    print(provenance() + "\n")
    print(
        f"Each cell: {config.hidden_size} units, at most {config.steps} updates of "
        f"{config.batch_size} sequences and {config.seconds:.0f} s per task and length (Adam, "
        f"lr {config.lr}, gradient norm clipped at {config.clip_norm}); solved: adding MSE ≤ "
        f"{config.solved_mse}, copy recall and digits accuracy ≥ {config.solved_accuracy} on the "
        f"validation check. All of it took {minutes:.0f} minutes.\n"
    )
    print("**The longest T solved** (`< T`: not even the shortest tried):\n")
    print(format_tables(result, config))


if __name__ == "__main__":
    main()
