"""The ``elman`` command. Thin: each subcommand parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from elman.errors import UserError
from elman.models import ARCHITECTURES
from elman.rnn import BACKENDS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train imdb`` and ``summary``; unset ones take the preset's value."""
    parser.add_argument(
        "--model",
        choices=ARCHITECTURES,
        default="rnn",
        help="architecture (default: rnn, the reference model)",
    )
    parser.add_argument("--hidden-size", type=_positive_int, help="RNN state size (32)")
    parser.add_argument("--embedding-dim", type=_positive_int, help="embedding (32; shallow 8)")
    parser.add_argument("--vocab-size", type=_positive_int, help="ids incl. 3 reserved (10000)")
    parser.add_argument(
        "--backend", choices=BACKENDS, help="RNN implementation (auto: fused on CPU, cuDNN on CUDA)"
    )
    parser.add_argument("--max-len", type=_positive_int, help="words per review (500; 20 shallow)")


def _run_config(args: argparse.Namespace):
    """The preset for ``--model`` with every option the user gave applied on top."""
    from elman.train import imdb_preset

    config = imdb_preset(args.model)
    model_changes = {
        name: getattr(args, name)
        for name in ("hidden_size", "embedding_dim", "vocab_size", "max_len", "backend")
        if getattr(args, name, None) is not None
    }
    data_changes = {
        name: getattr(args, name)
        for name in ("data", "vocab_size", "max_len", "cache_dir")
        if getattr(args, name, None) is not None
    }
    train_changes = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "lr", "seed", "threads", "bucket")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "seed", None) is not None:
        data_changes["seed"] = args.seed
    if getattr(args, "patience", None) is not None:
        train_changes["patience"] = None if args.patience < 0 else args.patience
    return replace(
        config,
        model=replace(config.model, **model_changes),
        data=replace(config.data, **data_changes),
        train=replace(config.train, **train_changes),
    )


def cmd_train_imdb(args: argparse.Namespace) -> None:
    from elman.train import train_imdb

    train_imdb(_run_config(args), out_dir=args.out, progress=not args.no_progress)


def cmd_summary(args: argparse.Namespace) -> None:
    from elman.models import ReviewClassifier, summary

    print(summary(ReviewClassifier(_run_config(args).model)))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from elman.data.imdb import load_imdb
    from elman.train import evaluate, load_run

    model, vocabulary, config = load_run(args.model)
    data_config = replace(config.data, data=args.data or config.data.data)
    if args.cache_dir:
        data_config = replace(data_config, cache_dir=args.cache_dir)
    data = load_imdb(data_config)
    if data.vocabulary != vocabulary:
        raise UserError(
            f"the vocabulary saved in {args.model} does not match the reviews in this archive; "
            "evaluate with the archive the model was trained on"
        )
    metrics = evaluate(model, data.test, config.train.eval_batch_size)
    print(f"Test ({len(data.test)} reviews): loss {metrics['loss']:.4f} - acc {metrics['acc']:.4f}")


def build_parser() -> argparse.ArgumentParser:
    from elman import __version__

    parser = argparse.ArgumentParser(
        prog="elman", description="Simple recurrent (Elman) networks: train, evaluate, inspect."
    )
    parser.add_argument("--version", action="version", version=f"elman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model")
    sources = train.add_subparsers(dest="source", required=True, metavar="SOURCE")
    imdb = sources.add_parser(
        "imdb",
        help="IMDB sentiment (Large Movie Review Dataset)",
        description="Train on 20,000 IMDB reviews, validate on 5,000, test on 25,000.",
    )
    _add_model_arguments(imdb)
    imdb.add_argument("--epochs", type=_positive_int, help="(3; 10 shallow)")
    imdb.add_argument("--batch-size", type=_positive_int, help="(32)")
    imdb.add_argument("--lr", type=_positive_float, help="RMSprop learning rate (0.001)")
    imdb.add_argument("--seed", type=int, help="seed for initialisation, split and shuffling (0)")
    imdb.add_argument(
        "--patience",
        type=int,
        help="early stopping: epochs without better val_loss (2); -1 turns it off",
    )
    imdb.add_argument(
        "--bucket",
        action="store_true",
        default=None,
        help="batch reviews of similar length together (faster; not the reference run)",
    )
    imdb.add_argument("--threads", type=_positive_int, help="torch threads (default: all cores)")
    imdb.add_argument(
        "--data",
        help="aclImdb .tar.gz or folder (default: $ELMAN_DATA, else download the official archive)",
    )
    imdb.add_argument("--cache-dir", help="where downloads and encoded arrays are cached")
    imdb.add_argument(
        "--out", type=Path, default=Path("runs/imdb"), help="output folder (default: runs/imdb)"
    )
    imdb.add_argument("--no-progress", action="store_true", help="no progress bar")
    imdb.set_defaults(handler=cmd_train_imdb)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on the test reviews")
    evaluate.add_argument("--model", type=Path, required=True, help="folder written by train")
    evaluate.add_argument("--data", help="aclImdb archive or folder (default: the one it used)")
    evaluate.add_argument("--cache-dir", help="where encoded arrays are cached")
    evaluate.set_defaults(handler=cmd_evaluate)

    summary = commands.add_parser("summary", help="print a model's layers and parameter counts")
    _add_model_arguments(summary)
    summary.set_defaults(handler=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except UserError as error:
        print(f"elman: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("elman: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
