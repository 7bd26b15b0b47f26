"""The ``elman`` command. Thin: each subcommand parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from elman.errors import UserError
from elman.models import ARCHITECTURES
from elman.rnn import BACKENDS


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (not the whole usage) and a pointer to help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    from elman.workflow import imdb_preset

    config = imdb_preset(args.model)
    model_changes = {
        name: getattr(args, name)
        for name in ("hidden_size", "embedding_dim", "vocab_size", "max_len", "backend")
        if getattr(args, name, None) is not None
    }
    data_changes = {
        name: getattr(args, name)
        for name in ("data", "vocab_size", "max_len", "cache_dir", "val_size")
        if getattr(args, name, None) is not None
    }
    train_changes = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "lr", "seed", "threads", "bucket", "clip_norm")
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
    from elman.workflow import train_imdb

    train_imdb(
        _run_config(args),
        out_dir=args.resume or args.out,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        resume=args.resume is not None,
    )


def cmd_summary(args: argparse.Namespace) -> None:
    from elman.models import ReviewClassifier, summary

    print(summary(ReviewClassifier(_run_config(args).model)))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from elman.workflow import evaluate_saved

    metrics = evaluate_saved(args.model, args.data, args.cache_dir)
    reviews, loss, accuracy = metrics["reviews"], metrics["loss"], metrics["acc"]
    print(f"Test ({reviews} reviews): loss {loss:.4f} - acc {accuracy:.4f}")


def _warn(message: str) -> None:
    print(f"elman: {message}", file=sys.stderr)


def _read_reviews(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(where it came from, text) for every review given as text, file, folder or stdin."""
    from elman.data.text import read_text

    reviews: list[tuple[str, str]] = []

    def decode(source: str, data: bytes) -> str:
        text, valid = read_text(data)
        if not valid:
            _warn(f"warning: {source} is not valid UTF-8; undecodable bytes were replaced")
        return text

    def add_lines(source: str, data: bytes) -> None:
        lines = decode(source, data).splitlines()
        reviews.extend((f"{source}:{n}", line) for n, line in enumerate(lines, 1) if line.strip())

    for number, text in enumerate(args.texts, start=1):
        if text == "-":
            add_lines("<stdin>", sys.stdin.buffer.read())
        else:
            reviews.append((f"argument {number}", text))
    for path in args.file:
        if not path.is_file():
            raise UserError(f"--file {path} is not a file: give a text file, one review a line")
        add_lines(str(path), path.read_bytes())
    for folder in args.folder:
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if not files:
            raise UserError(f"--folder {folder} holds no .txt files: give a folder of reviews")
        reviews.extend((str(path), decode(str(path), path.read_bytes())) for path in files)
    if not reviews:
        raise UserError(
            "no review to predict: give text, --file FILE (one review a line), --folder DIR "
            "(.txt files) or - (standard input)"
        )
    return reviews


def cmd_predict(args: argparse.Namespace) -> None:
    import json

    from elman.bundle import load

    classifier = load(args.model)
    reviews = _read_reviews(args)
    notes: list[str] = []
    predictions = classifier.predict([text for _, text in reviews], notes=notes)
    for note in notes:
        _warn(f"note: {note}")
    if args.json:
        records = [
            {"source": source, "label": p.label, "probability": p.probability}
            for (source, _), p in zip(reviews, predictions, strict=True)
        ]
        print(json.dumps(records, indent=2))
        return
    for (_, text), p in zip(reviews, predictions, strict=True):
        preview = " ".join(text.split())[:60]
        print(f"{p.label:<8} {p.probability:.4f}  {preview}")


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
    from elman.analysis.memory import MemoryConfig, analyze_memory, format_table

    config = MemoryConfig(
        lags=tuple(args.lags), steps=args.steps, seed=args.seed, hidden_size=args.hidden_size
    )
    table = analyze_memory(config, args.out)
    print(format_table(table, config.symbols))
    print(f"Wrote {args.out}/memory.json, memory.md and memory.png")


def cmd_lm_train(args: argparse.Namespace) -> None:
    from elman.analysis.language_model import LMConfig, train_language_model

    config = LMConfig(
        data=args.data,
        reviews=args.reviews,
        epochs=args.epochs,
        hidden_size=args.hidden_size,
        vocab_size=args.vocab_size,
        seed=args.seed,
    )
    train_language_model(config, args.out)
    print(f"Saved to {args.out}")


def cmd_lm_next(args: argparse.Namespace) -> None:
    from elman.analysis.language_model import load_language_model, next_words

    model, vocabulary = load_language_model(args.model)
    for word, probability in next_words(model, vocabulary, args.text, args.k):
        print(f"{word:<16} {probability:.4f}")


def cmd_explain(args: argparse.Namespace) -> None:
    from elman.analysis.explain import explain

    reading = explain(args.model, args.text, args.out)
    strongest = sorted(zip(reading.changes(), reading.words, strict=True), key=lambda c: -abs(c[0]))
    print(f"P(positive) after the last word: {reading.probabilities[-1]:.3f}")
    print("Words that moved it most: " + ", ".join(f"{w} ({c:+.3f})" for c, w in strongest[:8]))
    print(f"Wrote {args.out}/explain.html, explain.png and explain.json")


def build_parser() -> argparse.ArgumentParser:
    from elman import __version__

    parser = _Parser(
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
    imdb.add_argument(
        "--val-size", type=_positive_int, help="training reviews held out for validation (5000)"
    )
    imdb.add_argument("--cache-dir", help="where downloads and encoded arrays are cached")
    imdb.add_argument(
        "--out", type=Path, default=Path("runs/imdb"), help="output folder (default: runs/imdb)"
    )
    imdb.add_argument(
        "--overwrite", action="store_true", help="replace the model already saved in --out"
    )
    imdb.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the interrupted run saved in DIR (its settings are used)",
    )
    imdb.add_argument(
        "--clip-norm", type=_positive_float, help="clip the gradient norm to this before each step"
    )
    imdb.add_argument("--no-progress", action="store_true", help="no progress bar")
    imdb.set_defaults(handler=cmd_train_imdb)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on the test reviews")
    evaluate.add_argument("--model", type=Path, required=True, help="folder written by train")
    evaluate.add_argument("--data", help="aclImdb archive or folder (default: the one it used)")
    evaluate.add_argument("--cache-dir", help="where encoded arrays are cached")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="label reviews with a saved model",
        description="Print label and probability of 'positive' for each review.",
    )
    predict.add_argument(
        "texts",
        nargs="*",
        metavar="TEXT",
        help="review text; - reads standard input, one review a line",
    )
    predict.add_argument("--model", type=Path, required=True, help="folder written by train")
    predict.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        help="text file, one review a line (repeatable)",
    )
    predict.add_argument(
        "--folder",
        type=Path,
        action="append",
        default=[],
        help="folder of .txt files, one review each (repeatable)",
    )
    predict.add_argument("--json", action="store_true", help="JSON output")
    predict.set_defaults(handler=cmd_predict)

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
    gradients.add_argument("--seed", type=int, default=0, help="seed of the fresh model")
    gradients.add_argument("--out", type=Path, default=Path("runs/analysis"))
    gradients.set_defaults(handler=cmd_analyze_gradients)
    memory = analyses.add_parser(
        "memory",
        help="recall a symbol after L distractors: simple RNN vs LSTM vs GRU",
        description="Accuracy against lag on a synthetic recall task, for each recurrent layer.",
    )
    memory.add_argument("--lags", type=_positive_int, nargs="+", default=[5, 10, 20, 50, 100])
    memory.add_argument("--steps", type=_positive_int, default=3000, help="training steps")
    memory.add_argument("--hidden-size", type=_positive_int, default=32)
    memory.add_argument("--seed", type=int, default=0)
    memory.add_argument("--out", type=Path, default=Path("runs/analysis"))
    memory.set_defaults(handler=cmd_analyze_memory)

    lm = commands.add_parser("lm", help="word-level language model on IMDB reviews")
    lm_commands = lm.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    lm_train = lm_commands.add_parser("train", help="train on the unlabelled reviews")
    lm_train.add_argument("--data", help="aclImdb archive (default: $ELMAN_DATA or download)")
    lm_train.add_argument("--reviews", type=_positive_int, default=12_000)
    lm_train.add_argument("--epochs", type=_positive_int, default=1)
    lm_train.add_argument("--hidden-size", type=_positive_int, default=32)
    lm_train.add_argument("--vocab-size", type=_positive_int, default=10_000)
    lm_train.add_argument("--seed", type=int, default=0)
    lm_train.add_argument("--out", type=Path, default=Path("runs/lm"))
    lm_train.set_defaults(handler=cmd_lm_train)
    lm_next = lm_commands.add_parser("next", help="the most likely next words")
    lm_next.add_argument("text")
    lm_next.add_argument("--model", type=Path, default=Path("runs/lm"))
    lm_next.add_argument("-k", type=_positive_int, default=5, help="how many words")
    lm_next.set_defaults(handler=cmd_lm_next)

    explain = commands.add_parser(
        "explain",
        help="how the verdict evolves word by word (HTML + PNG)",
        description="Apply the classifier to every state h_t of a review.",
    )
    explain.add_argument("text")
    explain.add_argument("--model", type=Path, required=True, help="folder written by train")
    explain.add_argument("--out", type=Path, default=Path("runs/explain"))
    explain.set_defaults(handler=cmd_explain)

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
