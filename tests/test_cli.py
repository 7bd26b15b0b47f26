"""The command line: options generated from the configuration, one-line errors, help."""

import argparse
import re
from dataclasses import asdict, fields

import pytest

from conftest import run_elman
from elman.analysis.language_model import LMConfig
from elman.analysis.memory import MemoryConfig
from elman.analysis.tasks import TasksConfig
from elman.cli import build_parser, run_config, shown_value
from elman.data import SOURCES
from elman.errors import UserError
from elman.runs import preset


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _shown_defaults(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> the default an option's help states."""
    shown = {}
    for action in parser._actions:
        match = re.search(r"\(default: ([^;)]*)", action.help or "")
        if match and action.dest != "help":
            shown[action.dest] = match.group(1)
    return shown


@pytest.mark.parametrize("source", list(SOURCES))
def test_train_options_are_the_configuration_and_show_its_defaults(source):
    parser = build_parser()
    # No option given: exactly the preset the library uses.
    assert run_config(parser.parse_args(["train", source])) == preset(source)
    config = preset(source)
    expected = {**asdict(config.model), **asdict(config.data), **asdict(config.train)}
    shown = _shown_defaults(_subparser(parser, "train", source))
    # (--preset picks a recipe of settings; --nproc-per-node how many processes run it)
    options = set(shown) - {"out", "preset", "nproc_per_node"}
    settable = {
        f.name
        for part in (config.model, config.data, config.train)
        for f in fields(part)
        if f.metadata.get("cli", True) and f.name not in SOURCES[source].fixed
    }
    assert options == settable  # every setting has its option, and no option is not a setting
    for name in options:
        assert shown[name] == shown_value(expected[name]), name


def test_every_setting_of_a_run_has_one_name():
    """A flag sets one field: no two parts of a run's configuration share a field name."""
    for source in SOURCES:
        config = preset(source)
        names = [f.name for part in (config.model, config.data, config.train) for f in fields(part)]
        assert len(names) == len(set(names)), source


def test_options_given_reach_the_configuration():
    args = build_parser().parse_args(
        ["train", "text", "--model", "shallow", "--hidden-size", "7", "--seed", "3"]
        + ["--patience", "-1", "--classes", "neg", "pos", "--bucket", "--data", "x.csv"]
    )
    config = run_config(args)
    assert (config.model.architecture, config.model.hidden_size) == ("shallow", 7)
    assert (config.model.embedding_dim, config.model.max_len, config.train.epochs) == (8, 20, 10)
    assert (config.train.seed, config.train.patience, config.train.bucket) == (3, None, True)
    assert (config.data.classes, config.data.data) == (["neg", "pos"], "x.csv")


@pytest.mark.parametrize("source", ["imdb", "text", "series", "speech"])
def test_every_train_command_takes_the_long_memory_remedies(source):
    """``--init`` and ``--clip-norm`` (issue 30's remedies) on every train command; IndRNN's
    preset (ReLU, two layers) where its model is asked for."""
    model = ["--model", "rnn"] if source in ("series", "speech") else []
    args = ["train", source, *model, "--init", "identity", "--activation", "relu"]
    config = run_config(build_parser().parse_args([*args, "--clip-norm", "0.5"]))
    assert (config.model.init, config.model.activation, config.train.clip_norm) == (
        "identity",
        "relu",
        0.5,
    )
    indrnn = run_config(build_parser().parse_args(["train", source, "--model", "indrnn"]))
    assert (indrnn.model.activation, indrnn.model.layers) == ("relu", 2)


@pytest.mark.parametrize(
    "path,config",
    [
        (("analyze", "memory"), MemoryConfig()),
        (("analyze", "tasks"), TasksConfig()),
        (("lm", "train"), LMConfig()),
    ],
)
def test_analysis_options_show_the_code_defaults(path, config):
    shown = _shown_defaults(_subparser(build_parser(), *path))
    for item in fields(config):
        assert shown[item.name] == shown_value(getattr(config, item.name)), item.name


def test_summary_shows_the_model_defaults():
    shown = _shown_defaults(_subparser(build_parser(), "summary"))
    for name, value in asdict(preset("imdb").model).items():
        assert shown[name] == shown_value(value)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "imdb", "--data", "/no/such/aclImdb.tar.gz"], "not found"),
        (["train", "imdb", "--epochs", "0"], "must be positive"),
        (["train", "imdb", "--model", "transformer"], "invalid choice"),
        (["train", "speech", "--task", "forecast"], "unrecognized arguments"),
        (["evaluate", "--model", "/no/such/run"], "not a saved elman model"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "out")]
    result = run_elman(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("elman")
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start


def test_cli_help():
    for args in (
        ["--help"],
        ["train", "imdb", "--help"],
        ["train", "speech", "--help"],
        ["evaluate", "--help"],
        ["predict", "--help"],
        ["summary", "--help"],
        ["analyze", "memory", "--help"],
        ["lm", "train", "--help"],
    ):
        result = run_elman(*args)
        assert result.returncode == 0 and "usage: elman" in result.stdout


def test_preset_best_is_a_recipe_of_ordinary_options_that_options_override():
    from elman.data.imdb import BEST

    config = run_config(build_parser().parse_args(["train", "imdb", "--preset", "best"]))
    assert config == preset("imdb", recipe="best")
    for part, values in BEST.items():
        for name, value in values.items():
            assert getattr(getattr(config, part), name) == value, name
    assert config.model.bidirectional and config.data.val_split == "movie"
    given = run_config(
        build_parser().parse_args(["train", "imdb", "--preset", "best", "--epochs", "1"])
    )
    assert given.train.epochs == 1 and given.model.pooling == "max+mean"
    with pytest.raises(UserError, match="has no preset 'fastest'"):
        preset("imdb", recipe="fastest")
    with pytest.raises(SystemExit):  # the command line offers only the source's recipes
        build_parser().parse_args(["train", "series", "--preset", "fastest"])
