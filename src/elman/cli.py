"""The ``elman`` command. Thin: each subcommand parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from elman.errors import UserError
from elman.models import ARCHITECTURES, SEQUENCE_ARCHITECTURES
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


def _add_model_arguments(parser: argparse.ArgumentParser, words: bool = True) -> None:
    """Options of the network; unset ones take the preset's value. ``words``: a text model
    (embedding, vocabulary, length), else one over numbers (rnn, lstm or gru)."""
    parser.add_argument(
        "--model",
        choices=ARCHITECTURES if words else SEQUENCE_ARCHITECTURES,
        default="rnn",
        help="architecture (default: rnn, the simple RNN)",
    )
    parser.add_argument("--hidden-size", type=_positive_int, help="RNN state size (32; speech 64)")
    parser.add_argument(
        "--backend", choices=BACKENDS, help="RNN implementation (auto: fused on CPU, cuDNN on CUDA)"
    )
    if words:
        parser.add_argument("--embedding-dim", type=_positive_int, help="embedding (32; shallow 8)")
        parser.add_argument("--vocab-size", type=_positive_int, help="ids incl. 3 reserved (10000)")
        parser.add_argument(
            "--max-len", type=_positive_int, help="words per text (500; 20 shallow)"
        )


def _add_training_arguments(parser: argparse.ArgumentParser, source: str, epochs: str) -> None:
    """Options of every ``train`` source: training, output, resuming."""
    parser.add_argument("--epochs", type=_positive_int, help=f"({epochs})")
    parser.add_argument("--batch-size", type=_positive_int, help="(32)")
    parser.add_argument("--lr", type=_positive_float, help="RMSprop learning rate (0.001)")
    parser.add_argument(
        "--seed", type=int, help="seed for initialisation, splits and shuffling (0)"
    )
    parser.add_argument(
        "--patience",
        type=int,
        help="early stopping: epochs without better val_loss; -1 turns it off",
    )
    parser.add_argument("--threads", type=_positive_int, help="torch threads (default: all cores)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(f"runs/{source}"),
        help=f"output folder (default: runs/{source})",
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
    parser.add_argument(
        "--clip-norm", type=_positive_float, help="clip the gradient norm to this before each step"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=cmd_train)


def _add_split_arguments(parser: argparse.ArgumentParser, test: str) -> None:
    parser.add_argument("--test", help=f"test data in the same format (default: {test})")
    parser.add_argument(
        "--val-size",
        type=_positive_float,
        help="training samples held out for validation: a fraction < 1 or a count (0.2)",
    )
    parser.add_argument(
        "--test-size",
        type=_positive_float,
        help="without test data, samples held out for testing: fraction or count (0.2)",
    )


def _run_config(args: argparse.Namespace):
    """The preset for the source and ``--model``, with every option the user gave applied on top
    (an option applies to every part of the configuration that has a field of its name)."""
    from dataclasses import fields

    from elman.workflow import preset

    config = preset(getattr(args, "source", None) or "imdb", args.model)
    given = {name: value for name, value in vars(args).items() if value is not None}
    if "patience" in given and given["patience"] < 0:
        given["patience"] = None

    def updated(part, skip=()):
        names = {f.name for f in fields(part)} - set(skip)
        return replace(part, **{name: given[name] for name in names if name in given})

    return replace(
        config,
        model=updated(config.model, skip=("classes", "task")),
        data=updated(config.data),
        train=updated(config.train),
    )


def cmd_train(args: argparse.Namespace) -> None:
    from elman.workflow import train_model

    train_model(
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

    metrics = evaluate_saved(args.model, args.data, args.cache_dir, log=_warn)
    shown = " - ".join(
        f"{name} {metrics[name]:.4f}" for name in ("loss", "acc", "mae") if name in metrics
    )
    print(f"Test ({metrics['samples']} samples): {shown}")
    print(metrics["printed"])


def _warn(message: str) -> None:
    print(f"elman: {message}", file=sys.stderr)


def _read_reviews(args: argparse.Namespace, table_config) -> list[tuple[str, str]]:
    """(where it came from, text) for every review given as text, file, folder or stdin.
    A CSV/TSV/JSONL ``--file`` gives the text column named in ``table_config`` of each row."""
    from elman.data.text import read_text
    from elman.data.textfiles import JSON_LINES, TABLES, read_labelled

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
        if path.suffix.lower() in TABLES + JSON_LINES:  # the text column (or key) of each row
            invalid: list[str] = []
            samples = read_labelled(path, table_config, invalid, with_labels=False)["train"]
            if invalid:
                _warn(f"warning: {path} is not valid UTF-8; undecodable bytes were replaced")
            reviews.extend(zip(samples.where, samples.texts, strict=True))
        else:
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
    from elman.bundle import load

    trained = load(args.model)
    if trained.config.source == "speech":
        _predict_speech(trained, args)
    elif trained.config.source == "series":
        _predict_series(trained, args)
    else:
        _predict_texts(trained, args)


def _print_predictions(sources: list[str], predictions, previews: list[str], as_json: bool) -> None:
    import json

    if as_json:
        records = [
            {"source": source, "label": p.label, "probability": p.probability}
            for source, p in zip(sources, predictions, strict=True)
        ]
        print(json.dumps(records, indent=2))
        return
    width = max(8, *(len(p.label) for p in predictions))
    for preview, p in zip(previews, predictions, strict=True):
        print(f"{p.label:<{width}} {p.probability:.4f}  {preview}")


def _predict_texts(classifier, args: argparse.Namespace) -> None:
    from elman.data.textfiles import TextConfig

    data = classifier.config.data
    reviews = _read_reviews(args, data if isinstance(data, TextConfig) else TextConfig())
    notes: list[str] = []
    predictions = classifier.predict([text for _, text in reviews], notes=notes)
    for note in notes:
        _warn(f"note: {note}")
    previews = [" ".join(text.split())[:60] for _, text in reviews]
    _print_predictions([source for source, _ in reviews], predictions, previews, args.json)


def _given_paths(args: argparse.Namespace, suffix: str, what: str) -> list[Path]:
    paths = [Path(text) for text in args.texts] + list(args.file)
    for folder in args.folder:
        found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
        if not found:
            raise UserError(f"--folder {folder} holds no {suffix} files")
        paths.extend(found)
    if not paths:
        raise UserError(f"nothing to predict: give {what}")
    return paths


def _predict_speech(trained, args: argparse.Namespace) -> None:
    paths = _given_paths(args, ".wav", "WAV files (or --folder DIR)")
    notes: set[str] = set()
    predictions = trained.predict_files(paths, notes)
    for note in sorted(notes):
        _warn(f"note: {note}")
    _print_predictions([str(p) for p in paths], predictions, [str(p) for p in paths], args.json)


def _predict_series(trained, args: argparse.Namespace) -> None:
    """Each file in the training format: one prediction per series; labels, where the file has
    them, are checked against the model's classes and shown beside the prediction."""
    from elman.data.series import cut, read_series
    from elman.data.split import encode_labels

    # (a .npy of values is read without the training run's --labels file)
    data = replace(trained.config.data, labels=None)
    for path in _given_paths(args, "", "series files in the training format"):
        raw = cut(read_series(path, data), data.max_len)
        if data.task == "forecast":
            for where, value in zip(raw.where, trained.forecast(raw.values), strict=True):
                print(f"{where}: next value {' '.join(f'{v:.6g}' for v in value)}")
            continue
        if raw.labels is not None:
            encode_labels(raw.labels, trained.config.classes, raw.where)  # unknown labels: error
        predictions = trained.predict(raw.values)
        shown = [
            where + (f" (labelled {raw.labels[i]})" if raw.labels is not None else "")
            for i, where in enumerate(raw.where)
        ]
        _print_predictions(raw.where, predictions, shown, args.json)


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
    _add_training_arguments(imdb, "imdb", "3; 10 shallow")
    imdb.add_argument(
        "--bucket",
        action="store_true",
        default=None,
        help="batch reviews of similar length together (faster; not the reference run)",
    )
    imdb.add_argument(
        "--data",
        help="aclImdb .tar.gz or folder (default: $ELMAN_DATA, else download the official archive)",
    )
    imdb.add_argument(
        "--val-size", type=_positive_int, help="training reviews held out for validation (5000)"
    )
    imdb.add_argument("--cache-dir", help="where downloads and encoded arrays are cached")

    text = sources.add_parser(
        "text",
        help="your own labelled texts: CSV/TSV, JSON Lines, or a folder per class",
        description="Classify texts (two classes or more) from a CSV/TSV with a header row, a "
        "JSON Lines file, or a folder (or .tar.gz) with one subfolder of .txt files per class, "
        "optionally inside train/ and test/ folders (the aclImdb layout).",
    )
    _add_model_arguments(text)
    _add_training_arguments(text, "text", "3")
    text.add_argument("--data", help="the file or folder (or .tar.gz of a folder)")
    _add_split_arguments(text, "the folder's test/, else a seeded split")
    text.add_argument(
        "--val", help="validation data (default: a seeded split of the training data)"
    )
    text.add_argument("--text-column", help="CSV/TSV column or JSON key of the text (text)")
    text.add_argument("--label-column", help="CSV/TSV column or JSON key of the label (label)")
    text.add_argument(
        "--classes", nargs="+", help="folder layout: the class folders to read, in label order"
    )
    text.add_argument(
        "--bucket", action="store_true", default=None, help="batch texts of similar length"
    )

    series = sources.add_parser(
        "series",
        help="numeric sequences: UCR/UEA text files, CSV, .npy/.npz",
        description="Classify (or forecast) series. Text files hold one series a line, label "
        "first (UCR); X_TRAIN files find their X_TEST beside them. NaN, ? or empty fields are "
        "missing values; rows may differ in length. Values are standardised with the training "
        "split's statistics, kept in the saved model.",
    )
    _add_model_arguments(series, words=False)
    _add_training_arguments(series, "series", "200, with early stopping")
    series.add_argument("--data", help="X_TRAIN file or its folder, CSV, .npz (x, y) or .npy")
    _add_split_arguments(series, "the X_TEST file beside X_TRAIN, else a seeded split")
    series.add_argument("--labels", help="labels (.npy) for a .npy of values")
    series.add_argument(
        "--label-column",
        help="text files: the label's header name or index from 0 (default: a column named "
        "label/class/target/y, else the first)",
    )
    series.add_argument(
        "--no-labels", action="store_true", default=None, help="the files hold values only"
    )
    series.add_argument(
        "--task",
        choices=("classify", "forecast"),
        help="classify whole series, or forecast each next value (MSE/MAE vs last value)",
    )
    series.add_argument(
        "--max-len", type=_positive_int, help="keep the last N steps of each series"
    )

    speech = sources.add_parser(
        "speech",
        help="spoken words: WAV files labelled by file-name prefix or folder",
        description="Classify recordings from a folder (or .tar.gz) of WAV files, labelled by "
        "their subfolder or, all in one folder, by the file name's prefix (7_jackson_32.wav: "
        "7). Features are log-mel or MFCC frames (librosa), one RNN step per frame.",
    )
    _add_model_arguments(speech, words=False)
    _add_training_arguments(speech, "speech", "100, with early stopping after 10")
    speech.add_argument("--data", help="folder or .tar.gz of .wav files")
    _add_split_arguments(speech, "--test-pattern, else a seeded split")
    speech.add_argument(
        "--test-pattern",
        help="files whose name matches this regular expression are the test set "
        "(FSDD: '_[0-4]\\.wav$')",
    )
    speech.add_argument("--features", choices=("mfcc", "logmel"), help="(logmel)")
    speech.add_argument("--n-mfcc", type=_positive_int, help="MFCCs per frame (13)")
    speech.add_argument("--n-mels", type=_positive_int, help="mel bands (40)")
    speech.add_argument("--hop-ms", type=_positive_float, help="one frame every (20) ms")
    speech.add_argument("--frame-ms", type=_positive_float, help="analysis window (25) ms")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on the test reviews")
    evaluate.add_argument("--model", type=Path, required=True, help="folder written by train")
    evaluate.add_argument(
        "--data",
        help="labelled data in the training format (default: the test data it was tested on)",
    )
    evaluate.add_argument("--cache-dir", help="where encoded arrays are cached")
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
