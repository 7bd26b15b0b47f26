"""The user's own texts: CSV/TSV/JSONL/class folders, on real IMDB reviews."""

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_elman
from elman.data.imdb import IMDBConfig, load_imdb
from elman.data.textfiles import TextConfig, load_texts
from elman.errors import UserError


@pytest.fixture(scope="session")
def real_reviews(real_archive):
    """The real labelled reviews with their star ratings, read once."""
    reviews = {"train": [], "test": []}
    with tarfile.open(real_archive) as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[2] in ("pos", "neg"):
                rating = int(parts[3].split("_")[1].split(".")[0])
                text = archive.extractfile(member).read().decode()
                reviews[parts[1]].append((text, rating))
    return reviews


def stars(rating: int) -> str:
    """Three classes from the 1-10 ratings: "bad" (1-2), "mixed" (3-4, 7-8), "great" (9-10)."""
    return "bad" if rating <= 2 else "great" if rating >= 9 else "mixed"


def write_csv(path: Path, rows, delimiter=",", header=("text", "label")) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_aclimdb_folder_gives_the_imdb_arrays(real_archive, real_cache):
    """The aclImdb archive read as class folders equals ``elman train imdb``'s data exactly."""
    text = load_texts(
        TextConfig(data=str(real_archive), classes=["neg", "pos"]),
        vocab_size=10_000,
        max_len=500,
        seed=0,
    )
    imdb = load_imdb(
        IMDBConfig(data=str(real_archive), cache_dir=str(real_cache)),
        vocab_size=10_000,
        max_len=500,
        seed=0,
    )
    assert text.vocabulary == imdb.vocabulary
    for split in ("train", "val", "test"):
        ours, theirs = getattr(text, split), getattr(imdb, split)
        assert np.array_equal(ours.x, theirs.x) and np.array_equal(ours.y, theirs.y)
        assert np.array_equal(ours.lengths, theirs.lengths)


def test_folder_classes_must_agree_between_train_and_test(real_archive):
    # aclImdb/train has an unsup/ folder that test/ lacks: the user must choose.
    with pytest.raises(UserError, match="choose the classes with `classes`"):
        load_texts(TextConfig(data=str(real_archive)), vocab_size=10_000, max_len=500, seed=0)


def test_csv_tsv_and_jsonl_read_the_same_samples(tmp_path, real_reviews):
    rows = [(text, stars(rating)) for text, rating in real_reviews["train"][::500]]
    configs = []
    configs.append(TextConfig(data=str(write_csv(tmp_path / "r.csv", rows))))
    tsv_rows = [(text.replace("\t", " "), label) for text, label in rows]
    configs.append(TextConfig(data=str(write_csv(tmp_path / "r.tsv", tsv_rows, "\t"))))
    with open(tmp_path / "r.jsonl", "w") as file:
        for text, label in tsv_rows:
            file.write(json.dumps({"review": text, "stars": label}) + "\n")
    configs.append(
        TextConfig(data=str(tmp_path / "r.jsonl"), text_column="review", label_column="stars")
    )
    sizes = {"vocab_size": 10_000, "max_len": 50, "seed": 0}
    loaded = [load_texts(config, **sizes, log=lambda _: None) for config in configs]
    assert loaded[0].classes == ["bad", "great", "mixed"]
    assert len(loaded[0].train) + len(loaded[0].val) + len(loaded[0].test) == len(rows)
    for other in loaded[1:]:
        assert other.classes == loaded[0].classes
        assert np.array_equal(other.test.y, loaded[0].test.y)
        assert other.test.y.dtype == np.int64  # three classes: indices for cross-entropy


@pytest.mark.slow
def test_multiclass_text_trains_on_real_reviews(tmp_path, real_reviews):
    """Three rating classes from real reviews: softmax head, cross-entropy, per-class report."""
    rows = [(text, stars(rating)) for text, rating in real_reviews["train"][::2]]
    test_rows = [(text, stars(rating)) for text, rating in real_reviews["test"][::25]]
    data = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", test_rows)
    out = tmp_path / "model"
    result = run_elman(
        "train", "text", "--data", str(data), "--test", str(test), "--max-len", "200",
        "--vocab-size", "5000", "--epochs", "3", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["report"]
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == len(test_rows)
    majority = max(np.bincount([["bad", "great", "mixed"].index(r[1]) for r in test_rows]))
    assert metrics["test_acc"] > majority / len(test_rows) + 0.05  # beats the majority class
    assert report["macro_f1"] > 0.4  # and not by predicting it: that would score 0.2
    assert "precision  recall" in result.stdout and "confusion matrix" in result.stdout
    predicted = run_elman("predict", "--model", str(out), "--json", "An awful, boring mess.")
    assert json.loads(predicted.stdout)[0]["label"] in ("bad", "great", "mixed")
    # Evaluating on a file with a label the model never saw is refused, naming the line.
    bad = write_csv(tmp_path / "bad.csv", [*test_rows[:3], ("A fine film.", "superb")])
    refused = run_elman("evaluate", "--model", str(out), "--data", str(bad))
    assert refused.returncode == 1
    assert "line 5: label 'superb' is not one of the model's classes" in refused.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("text,label\nfine film,pos\nbad film,neg,extra\n", "line 3 has 3 fields"),
        ("review,label\nfine film,pos\n", "has no column 'text'"),
        ("text,label\nfine film,pos\nbad film,\n", "line 3 has no label"),
        ("text,label\nfine film,pos\nbad film,pos\n", "only the label 'pos'"),
        # an unclosed quote is told on the line it opens, not where the reader gave up
        ('text,label\n"fine film,pos\nbad film,neg\nok film,pos\n', "line 2: the record"),
        ('text,label\nfine film,pos\n"bad" film,neg\n', "line 3: the record"),
    ],
)
def test_malformed_csv_gets_one_line(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    result = run_elman("train", "text", "--data", str(path), "--out", str(tmp_path / "m"))
    assert result.returncode == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_json_line_and_empty_class_folder(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        load_texts(TextConfig(data=str(path)), vocab_size=10_000, max_len=500, seed=0)
    for name, texts in (("pos", ["good film"]), ("neg", [])):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "folder" / name / f"{i}.txt").write_text(text)
    with pytest.raises(UserError, match="folder/neg is missing or holds no .txt files"):
        load_texts(
            TextConfig(data=str(tmp_path / "folder"), classes=["neg", "pos"]),
            vocab_size=10_000,
            max_len=500,
            seed=0,
        )


def test_predict_reads_the_text_column_of_a_csv(tmp_path):
    from conftest import save_small_model

    save_small_model(tmp_path / "model")
    texts = ["the film was great", "boring story, bad acting"]
    write_csv(tmp_path / "new.csv", [(1, text) for text in texts], header=("id", "text"))
    from_file = run_elman("predict", "--model", str(tmp_path / "model"), "--json", "--file",
                          str(tmp_path / "new.csv"))  # fmt: skip
    as_arguments = run_elman("predict", "--model", str(tmp_path / "model"), "--json", *texts)
    records = json.loads(from_file.stdout)
    assert [r["source"] for r in records] == [f"{tmp_path / 'new.csv'} line {n}" for n in (2, 3)]
    assert [r["probability"] for r in records] == [
        r["probability"] for r in json.loads(as_arguments.stdout)
    ]


def sorted_rows(split) -> tuple[np.ndarray, np.ndarray]:
    """A split's rows (ids and label) in a fixed order: to compare splits as sets of rows."""
    order = np.lexsort(np.column_stack([split.x, split.y]).T)
    return split.x[order], split.y[order]


@pytest.mark.parametrize("layout", ["jsonl, seeded test split", "csv with a test file"])
def test_encode_streams_a_text_file_into_the_splits_load_texts_makes(
    tmp_path, real_reviews, layout
):
    """``elman encode text`` reads CSV/JSONL a piece at a time (three passes, at most a shard
    of rows in memory), into the same vocabulary and classes as training reads in memory, and
    the same rows in every split; undecodable bytes and odd line breaks included."""
    from elman.config import updated
    from elman.data.shards import read_encoded
    from elman.runs import preset
    from elman.workflow import encode, prepare_data

    rows = [(text, stars(rating)) for text, rating in real_reviews["train"][::25]]  # 1,000
    rows[3] = ("caf\u00e9 line\u2028break " + rows[3][0], rows[3][1])  # (inside JSON: one line)
    test_rows = [(text, stars(rating)) for text, rating in real_reviews["test"][::100]]
    if layout.startswith("jsonl"):
        data = tmp_path / "reviews.jsonl"
        lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in rows]
        data.write_bytes("\n".join(lines).encode().replace(b"caf\xc3\xa9", b"caf\xe9") + b"\n")
        settings = {"data": str(data)}
    else:
        data = write_csv(tmp_path / "reviews.csv", rows)
        settings = {"data": str(data), "test": str(write_csv(tmp_path / "test.csv", test_rows))}
    config = updated(preset("text"), {**settings, "max_len": 80, "vocab_size": 3000})
    notes = []
    manifest = encode(config, tmp_path / "encoded", 128, log=notes.append)
    streamed = read_encoded(tmp_path / "encoded", "text")
    _, whole = prepare_data(config, lambda _: None)
    assert streamed.learned.vocabulary == whole.learned.vocabulary
    assert streamed.learned.classes == whole.learned.classes
    assert max(part["rows"] for part in manifest["train"]) == 128
    shards = [
        streamed.train.batch(k, torch.arange(n))[0] for k, n in enumerate(streamed.train.rows)
    ]
    joined = type(whole.train)(
        *(np.concatenate([getattr(s, name) for s in shards]) for name in ("x", "y", "lengths"))
    )
    for mine, theirs in ((joined, whole.train), (streamed.val, whole.val)):
        for got, expected in zip(sorted_rows(mine), sorted_rows(theirs), strict=True):
            np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(streamed.test.x, whole.test.x)  # (in file order, as loaded)
    np.testing.assert_array_equal(streamed.test.y, whole.test.y)
    if layout.startswith("jsonl"):
        assert any("not valid UTF-8" in note for note in notes)


def test_encode_refuses_what_load_texts_refuses_and_leaves_nothing(tmp_path, real_reviews):
    from elman.config import updated
    from elman.runs import preset
    from elman.workflow import encode

    rows = [(text, stars(rating)) for text, rating in real_reviews["train"][:50]]
    rows[7] = (rows[7][0], "")
    data = write_csv(tmp_path / "reviews.csv", rows)
    config = updated(preset("text"), {"data": str(data)})
    with pytest.raises(UserError, match="line 9 has no label: give every sample one"):
        encode(config, tmp_path / "out", 10)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_encode_holds_a_shard_not_the_corpus(tmp_path, real_reviews):
    """Peak memory (tracemalloc: Python objects and NumPy arrays) of encoding 5,000 real
    reviews a piece at a time, against reading them whole as training does."""
    import tracemalloc

    from elman.config import updated
    from elman.runs import preset
    from elman.workflow import encode, prepare_data

    rows = [(text, stars(rating)) for text, rating in real_reviews["train"][::5]]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    config = updated(preset("text"), {"data": str(data), "max_len": 200})
    peaks = []
    for job in (
        lambda: encode(config, tmp_path / "encoded", 250, log=lambda _: None),
        lambda: prepare_data(config, lambda _: None),
    ):
        tracemalloc.start()
        job()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    streamed, whole = peaks
    assert streamed < whole / 3, (streamed, whole)


def test_own_files_as_spreadsheets_and_exporters_write_them(tmp_path):
    """A CSV with a byte-order mark (as spreadsheet programs save it) reads as without one;
    JSON Lines labels 0.0 and 1.0 are the classes 0 and 1, as 0 and 1 are."""
    rows = [("a fine warm film", "good"), ("a dull bad film", "bad")] * 10
    plain = write_csv(tmp_path / "plain.csv", rows)
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    settings = {"vocab_size": 100, "max_len": 8, "seed": 0}
    read = [load_texts(TextConfig(data=str(path)), **settings) for path in (plain, marked)]
    assert read[0].classes == read[1].classes == ["bad", "good"]
    np.testing.assert_array_equal(read[0].train.x, read[1].train.x)
    lines = [json.dumps({"text": text, "label": float(label == "good")}) for text, label in rows]
    (tmp_path / "floats.jsonl").write_text("\n".join(lines) + "\n")
    floats = load_texts(TextConfig(data=str(tmp_path / "floats.jsonl")), **settings)
    assert floats.classes == ["0", "1"]
    np.testing.assert_array_equal(floats.train.x, read[0].train.x)
