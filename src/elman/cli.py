"""The ``elman`` command. Thin: it parses arguments and calls the library.

The options of ``elman train SOURCE``, ``summary``, ``analyze memory`` and ``lm train`` are
generated from the configuration dataclasses (``elman.config``, each source's config in
``elman.data``): a field becomes ``--field-name``, its type the option's type, its one-line doc
the help, and the help shows the default the code uses.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from elman.errors import UserError
from elman.settings import kind_of


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (not the whole usage) and a pointer to help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Options generated from dataclass fields ------------------------------------------------------

# Numbers that may be zero or negative (every other number must be positive).
_ANY_NUMBER = ("seed", "patience", "dropout", "recurrent_dropout")


def _number(kind: type, optional: bool, any_number: bool):
    """An argparse type: a number (positive unless ``any_number``); for an optional setting,
    ``none`` or a negative number means None (off)."""

    def convert(text: str):
        if optional and text.lower() in ("none", "off"):
            return None
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if optional and value < 0:
            return None
        if not any_number and not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value}")
        return value

    return convert


def _architecture_note(choices) -> str:
    """For the --model option: the defaults an architecture changes (shallow: ...)."""
    from elman.cells import CELLS

    notes = [
        f"; {name}: "
        + ", ".join(
            f"{key.replace('_', '-')} {value}"
            for part in changes.values()
            for key, value in part.items()
        )
        for name, changes in ((name, kind.preset) for name, kind in CELLS.items())
        if changes and name in (choices or ())
    ]
    return "".join(notes)


def shown_value(value: Any) -> str:
    if value is None:
        return "none"
    if value == "":
        return "''"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return str(value)


def add_settings(
    parser: argparse.ArgumentParser,
    config: Any,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> None:
    """One option per field of the dataclass instance ``config`` (except ``skip``, those not in
    ``only`` when given, and fields the data decides), whose help ends with the field's value
    in ``config``: the default. Options left out are not set (``argparse.SUPPRESS``), so the
    preset's value stands."""
    for item in fields(config):
        meta = item.metadata
        if item.name in skip or (only is not None and item.name not in only):
            continue
        if not meta.get("cli", True) or "doc" not in meta:
            continue
        flag = "--" + (meta["flag"] or item.name).replace("_", "-")
        base, element, optional = kind_of(item.type)
        value = getattr(config, item.name)
        help_text = (
            f"{meta['doc']} (default: {shown_value(value)}{_architecture_note(meta['choices'])})"
        )
        options: dict[str, Any] = {"dest": item.name, "default": argparse.SUPPRESS}
        if base == "bool":
            options.update(action="store_true")
        elif base in ("list", "tuple"):
            options.update(nargs="+", type=_number(int, False, False) if element == "int" else str)
        elif base in ("int", "float"):
            number = int if base == "int" else float
            options["type"] = _number(number, optional, item.name in _ANY_NUMBER)
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        parser.add_argument(flag, help=help_text, **options)


def given_settings(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """The fields of ``config`` that the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(config) if hasattr(args, f.name)}


def run_config(args: argparse.Namespace):
    """The preset for the source and ``--model``, with every option the user gave applied."""
    from elman.config import updated
    from elman.runs import preset

    config = preset(
        getattr(args, "source", "imdb"),
        getattr(args, "architecture", None),
        getattr(args, "preset", "reference"),
    )
    given = vars(args)
    if given.get("task") == "forecast" and "pooling" not in given:
        given = {**given, "pooling": "last"}  # (a preset pools to classify; forecasts read all)
    return updated(config, given)


# Commands --------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from elman.distributed import World, check_workers, launch
    from elman.workflow import train_model

    world = World.from_environment()  # started by torchrun (or alike): join its job
    if args.resume is not None:
        _refuse_settings_beside_resume(args.argv)
    if args.nproc_per_node > 1 and not world.distributed:
        check_workers(args.nproc_per_node, getattr(args, "device", "auto"))
        raise SystemExit(launch(args.nproc_per_node, _without_nproc(args.argv)))
    train_model(
        run_config(args),
        out_dir=args.resume or args.out,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        resume=args.resume is not None,
        world=world,
    )


def cmd_encode(args: argparse.Namespace) -> None:
    from elman.workflow import encode

    encode(run_config(args), args.out, args.shard_size, log=_warn)


# What a resumed run may choose afresh: where it runs and where its data lies, never what it
# computes (the checkpoint holds a digest of the data it trained on, compared on resuming).
_RESUMABLE = ("--resume", "--device", "--threads", "--no-progress", "--nproc-per-node")
_RESUMABLE += ("--data", "--cache-dir", "--encoded")


def _refuse_settings_beside_resume(argv: list[str]) -> None:
    """``--resume`` continues a run with its saved settings: an option that would change them
    is refused rather than silently ignored."""
    given = [arg.split("=")[0] for arg in argv if arg.startswith("--")]
    changed = [option for option in given if option not in _RESUMABLE]
    if changed:
        raise UserError(
            f"--resume continues the run with its own saved settings, so {', '.join(changed)} "
            "would be ignored: leave it out (or start a new run in another --out)"
        )


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line each worker runs: the same, less ``--nproc-per-node N``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            kept.append(arg)
    return kept


def cmd_summary(args: argparse.Namespace) -> None:
    from elman.models import build_model, summary

    print(summary(build_model(run_config(args))))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from elman.workflow import evaluate_saved

    metrics = evaluate_saved(args.model, args.data, args.cache_dir, log=_warn, device=args.device)
    shown = " - ".join(
        f"{name} {metrics[name]:.4f}" for name in ("loss", "acc", "mae") if name in metrics
    )
    print(f"Test ({metrics['samples']} samples): {shown}")
    print(metrics["printed"])


def _warn(message: str) -> None:
    print(f"elman: {message}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> None:
    from elman.data.source import Given
    from elman.workflow import predict_saved

    given = Given(args.texts, args.file, args.folder)
    inputs, answers = predict_saved(args.model, given, log=_warn, device=args.device)
    if not isinstance(answers, list):  # a forecaster's next values (N, F)
        for where, value in zip(inputs.where, answers, strict=True):
            print(f"{where}: next value {' '.join(f'{v:.6g}' for v in value)}")
        return
    if args.json:
        records = [
            {"source": where, "label": p.label, "probability": p.probability}
            for where, p in zip(inputs.where, answers, strict=True)
        ]
        print(json.dumps(records, indent=2))
        return
    width = max(8, *(len(p.label) for p in answers))
    for shown, p in zip(inputs.shown, answers, strict=True):
        print(f"{p.label:<{width}} {p.probability:.4f}  {shown}")


def cmd_analyze_gradients(args: argparse.Namespace) -> None:
    from elman.analysis.gradients import analyze_gradients

    result = analyze_gradients(args.model, args.review, args.compare, args.out, args.seed)
    steps = next(iter(result["curves"].values()))["review_steps"]
    print(f"Jacobian norms on a review of {steps} steps")
    for name, summary in result["summary"].items():
        first = "  ".join(f"{k} {v:.2e}" for k, v in summary["first"].items())
        print(f"  {name:<24} ||dh_t/dx_1||: {first}")
    for name, summary in result["summary"].items():
        last = "  ".join(f"{k} {v:.2e}" for k, v in summary["last"].items())
        print(f"  {name:<24} ||dh_T/dx_(T-t+1)||: {last}")
    print(f"Wrote {args.out / 'gradients.json'} and {args.out / 'gradients.png'}")


def cmd_analyze_memory(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from elman.analysis.memory import MemoryConfig, analyze_memory, format_table

    config = MemoryConfig()
    config = replace(config, **given_settings(args, config))
    table = analyze_memory(config, args.out)
    print(format_table(table, config.symbols))
    print(f"Wrote {args.out}/memory.json, memory.md and memory.png")


def cmd_analyze_tasks(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from elman.analysis.tasks import TasksConfig, analyze_tasks, format_tables

    config = TasksConfig()
    config = replace(config, **given_settings(args, config))
    print(format_tables(analyze_tasks(config, args.out), config))
    print(f"Wrote {args.out}/tasks.json, tasks.md and tasks.png")


def cmd_lm_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from elman.analysis.language_model import LMConfig, train_language_model

    config = LMConfig()
    train_language_model(replace(config, **given_settings(args, config)), args.out)
    print(f"Saved to {args.out}")


def cmd_lm_next(args: argparse.Namespace) -> None:
    from elman.analysis.language_model import load_language_model, next_words

    model, vocabulary = load_language_model(args.model)
    for word, probability in next_words(model, vocabulary, args.text, args.k):
        print(f"{word:<16} {probability:.4f}")


def cmd_serve(args: argparse.Namespace) -> None:
    from elman.serve import ServeSettings, serve

    settings = ServeSettings(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts)
    serve(args.model, args.host, args.port, settings, log=_warn)


def cmd_export(args: argparse.Namespace) -> None:
    from elman.export import export_onnx

    export_onnx(args.model, args.onnx)
    print(f"Wrote {args.onnx}")


def cmd_explain(args: argparse.Namespace) -> None:
    from elman.analysis.explain import explain

    reading = explain(args.model, args.text, args.out)
    strongest = sorted(zip(reading.changes(), reading.words, strict=True), key=lambda c: -abs(c[0]))
    print(f"P(positive) after the last word: {reading.probabilities[-1]:.3f}")
    print("Words that moved it most: " + ", ".join(f"{w} ({c:+.3f})" for c, w in strongest[:8]))
    print(f"Wrote {args.out}/explain.html, explain.png and explain.json")


# The parser ------------------------------------------------------------------------------------


def _add_train(commands) -> None:
    from elman.data import SOURCES
    from elman.runs import preset

    train = commands.add_parser("train", help="train a model")
    sources = train.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, source in SOURCES.items():
        parser = sources.add_parser(name, help=source.help, description=source.description)
        if source.recipes:
            parser.add_argument(
                "--preset",
                choices=["reference", *source.recipes],
                default="reference",
                help="a named recipe of settings (options given beside it win): "
                + "; ".join(f"{recipe}: {text}" for recipe, text in source.recipe_help.items())
                + " (default: reference)",
            )
        config = preset(name)
        add_settings(parser, config.model, skip=tuple(source.fixed))
        add_settings(parser, config.data)
        add_settings(parser, config.train)
        parser.add_argument(
            "--out",
            type=Path,
            default=Path(f"runs/{name}"),
            help=f"output folder (default: runs/{name})",
        )
        parser.add_argument(
            "--overwrite", action="store_true", help="replace the model already saved in --out"
        )
        parser.add_argument(
            "--resume",
            type=Path,
            metavar="DIR",
            help="continue the interrupted run saved in DIR (its settings are used)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--nproc-per-node",
            type=_workers,
            default=1,
            metavar="N",
            help="train data-parallel in N local worker processes (torch.distributed; "
            "--batch-size is per worker); under torchrun, the job it starts is joined instead "
            "(default: 1)",
        )
        parser.set_defaults(handler=cmd_train)


def _add_encode(commands) -> None:
    from elman.data import SOURCES
    from elman.runs import preset

    encode = commands.add_parser(
        "encode",
        help="read a source once and write it encoded, in shards (train --encoded DIR)",
        description="Training then streams the shards from disk; data-parallel workers each "
        "read their own.",
    )
    sources = encode.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, source in SOURCES.items():
        parser = sources.add_parser(name, help=source.help, description=source.description)
        config = preset(name)
        # the settings that shape the arrays: the data's, the ids and length, the split's seed
        add_settings(parser, config.model, only=("vocab_size", "max_len"))
        add_settings(parser, config.data)
        add_settings(parser, config.train, only=("seed",))
        parser.add_argument("--out", type=Path, required=True, help="the new folder to write")
        parser.add_argument(
            "--shard-size",
            type=_number(int, False, False),
            default=100_000,
            help="training samples per shard (default: 100000)",
        )
        parser.set_defaults(handler=cmd_encode)


def _add_device(parser: argparse.ArgumentParser) -> None:
    from elman.config import DEVICES

    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to run: auto (CUDA when present), cpu or cuda (default: auto)",
    )


def _add_use(commands) -> None:
    """evaluate, predict, explain: commands on a saved model."""
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model on its test data or on labelled data"
    )
    evaluate.add_argument("--model", type=Path, required=True, help="folder written by train")
    evaluate.add_argument(
        "--data",
        help="labelled data in the training format (default: the test data it was tested on)",
    )
    evaluate.add_argument("--cache-dir", help="where encoded arrays are cached (IMDB)")
    _add_device(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="label texts, recordings or series with a saved model",
        description="Print each sample's predicted label and probability (two classes: of the "
        "second, e.g. 'positive'; more: of the predicted one), or a forecaster's next value.",
    )
    predict.add_argument(
        "texts",
        nargs="*",
        metavar="TEXT",
        help="text (- reads standard input, one a line); for speech models WAV files, for "
        "series models files in the training format",
    )
    predict.add_argument("--model", type=Path, required=True, help="folder written by train")
    predict.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        help="text file, one review a line; a .csv/.tsv/.jsonl gives its text column (repeatable)",
    )
    predict.add_argument(
        "--folder",
        type=Path,
        action="append",
        default=[],
        help="folder of .txt (or .wav) files, one sample each (repeatable)",
    )
    predict.add_argument("--json", action="store_true", help="JSON output")
    _add_device(predict)
    predict.set_defaults(handler=cmd_predict)

    explain = commands.add_parser(
        "explain",
        help="how the verdict evolves word by word (HTML + PNG)",
        description="Apply the classifier to every state h_t of a review.",
    )
    explain.add_argument("text")
    explain.add_argument("--model", type=Path, required=True, help="folder written by train")
    explain.add_argument(
        "--out", type=Path, default=Path("runs/explain"), help="(default: runs/explain)"
    )
    explain.set_defaults(handler=cmd_explain)


def _add_analysis(commands) -> None:
    from elman.analysis.language_model import LMConfig
    from elman.analysis.memory import MemoryConfig

    analyze = commands.add_parser("analyze", help="measure what a simple RNN remembers")
    analyses = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    gradients = analyses.add_parser(
        "gradients",
        help="exact Jacobian norms dh_t/dx_1 and dh_T/dx_t on a review",
        description="Gradient flow through a saved model, its fresh initialisation, and others.",
    )
    gradients.add_argument("--model", type=Path, required=True, help="folder written by train")
    gradients.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="another saved model (e.g. --model lstm), repeatable",
    )
    gradients.add_argument("--review", help="review text (default: a 300+ word test review)")
    gradients.add_argument(
        "--seed", type=int, default=0, help="seed of the fresh model (default: 0)"
    )
    gradients.add_argument(
        "--out", type=Path, default=Path("runs/analysis"), help="(default: runs/analysis)"
    )
    gradients.set_defaults(handler=cmd_analyze_gradients)
    memory = analyses.add_parser(
        "memory",
        help="recall a symbol after L distractors: simple RNN vs LSTM vs GRU",
        description="Accuracy against lag on a synthetic recall task, for each recurrent layer.",
    )
    add_settings(memory, MemoryConfig())
    memory.add_argument(
        "--out", type=Path, default=Path("runs/analysis"), help="(default: runs/analysis)"
    )
    memory.set_defaults(handler=cmd_analyze_memory)
    _add_tasks(analyses)

    lm = commands.add_parser("lm", help="word-level language model on IMDB reviews")
    lm_commands = lm.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    lm_train = lm_commands.add_parser("train", help="train on the unlabelled reviews")
    add_settings(lm_train, LMConfig())
    lm_train.add_argument("--out", type=Path, default=Path("runs/lm"), help="(default: runs/lm)")
    lm_train.set_defaults(handler=cmd_lm_train)
    lm_next = lm_commands.add_parser("next", help="the most likely next words")
    lm_next.add_argument("text")
    lm_next.add_argument("--model", type=Path, default=Path("runs/lm"), help="(default: runs/lm)")
    lm_next.add_argument(
        "-k", type=_number(int, False, False), default=5, help="how many words (default: 5)"
    )
    lm_next.set_defaults(handler=cmd_lm_next)


def _add_tasks(analyses) -> None:
    from elman.analysis.tasks import TasksConfig

    tasks = analyses.add_parser(
        "tasks",
        help="the adding problem, the copy task, digits pixel by pixel: RNN, remedies, LSTM, GRU",
        description="The longest T each cell solves within one budget on the standard "
        "long-memory tasks (elman.analysis.tasks says how).",
    )
    add_settings(tasks, TasksConfig())
    tasks.add_argument(
        "--out", type=Path, default=Path("runs/analysis"), help="(default: runs/analysis)"
    )
    tasks.set_defaults(handler=cmd_analyze_tasks)


def build_parser() -> argparse.ArgumentParser:
    from elman.runs import preset
    from elman.version import __version__

    parser = _Parser(
        prog="elman", description="Simple recurrent (Elman) networks: train, evaluate, inspect."
    )
    parser.add_argument("--version", action="version", version=f"elman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_encode(commands)
    _add_use(commands)
    _add_analysis(commands)
    _add_serve(commands)
    summary = commands.add_parser("summary", help="print a model's layers and parameter counts")
    add_settings(summary, preset("imdb").model)
    summary.set_defaults(handler=cmd_summary)
    return parser


def _add_serve(commands) -> None:
    """serve and export: a saved model for other programs."""
    serve = commands.add_parser(
        "serve",
        help="serve a saved model over HTTP, with a page that shows it reading",
        description="POST /predict, POST /explain, GET /health, GET /model; the page at /.",
    )
    serve.add_argument("--model", type=Path, required=True, help="folder written by train")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="port, 0 for any free one (default: 8000)"
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=4_000_000,
        help="larger request bodies are refused with 413 (default: 4000000)",
    )
    serve.add_argument(
        "--max-texts", type=int, default=10_000, help="inputs per request (default: 10000)"
    )
    serve.set_defaults(handler=cmd_serve)
    export = commands.add_parser(
        "export",
        help="write a saved model as a standard ONNX graph",
        description="The recurrence becomes ONNX's own RNN operator (W, R, B from A and b).",
    )
    export.add_argument("--model", type=Path, required=True, help="folder written by train")
    export.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    export.set_defaults(handler=cmd_export)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535 (0: any free port), got {text!r}"
        )
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of workers >= 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from elman.distributed import PEER_LOST, PeerLost

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    code = 0
    try:
        args.handler(args)
    except UserError as error:
        print(f"elman: error: {_ranked(in_flags(str(error)))}", file=sys.stderr)
        code = 1
    except PeerLost as error:
        print(
            f"elman: {_ranked('stopped: another worker stopped or died')} ({error})",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        # At once: the broken process group's threads would abort a normal exit.
        os._exit(PEER_LOST)
    except OSError as error:  # the file system said no: a read-only or full disk, permissions
        where = f" {error.filename}" if error.filename else ""
        print(
            f"elman: error: cannot read or write{where}: {error.strerror or error}; check the "
            "path, its permissions and the free space",
            file=sys.stderr,
        )
        code = 1
    except KeyboardInterrupt:
        print("elman: interrupted", file=sys.stderr)
        code = 130
    if _in_a_job():
        # A worker ends here, done or refused (its group left): the C++ threads of the process
        # group's libraries, torn down at interpreter exit, once in a while abort it ("terminate
        # called without an active exception", exit -6 instead of its own code).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def command_line() -> None:
    """The ``elman`` program (and ``python -m elman``): ``main`` on the process's arguments,
    then exit with its code."""
    code = main()
    # What is left is freed by the exit. Frozen, it is not walked by the interpreter's last
    # full collection, which over torch's, numba's and scikit-learn's objects took 0.5-1.2 s
    # of every command (0.6 s after `import torch, sklearn` alone).
    gc.freeze()
    sys.exit(code)


def _in_a_job() -> bool:
    """Whether a launcher started this process as one of several workers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def in_flags(message: str) -> str:
    """A library message in the command line's words: each setting it names (`name`) as the
    option that sets it (``--name``; ``--model`` for `architecture`)."""
    from elman.config import ModelConfig, SequenceConfig, TrainConfig

    parts = (ModelConfig, SequenceConfig, TrainConfig)
    flags = {f.name: f.metadata["flag"] for p in parts for f in fields(p) if f.metadata.get("flag")}
    flags["out_dir"] = "out"  # (train_model's folder, ``--out``)
    return re.sub(
        r"`([a-z][a-z0-9_]*)`",
        lambda found: "--" + flags.get(found[1], found[1]).replace("_", "-"),
        message,
    )


def _ranked(message: object) -> str:
    """A worker's message names its rank (under a launcher); a single process's does not."""
    if _in_a_job():
        return f"rank {os.environ.get('RANK', '?')}: {message}"
    return str(message)


if __name__ == "__main__":
    sys.exit(main())
