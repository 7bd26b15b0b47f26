"""Encoded data in shards (``elman encode``, ``train --encoded``) on a subset of the real
archive: the shards hold the split exactly, workers are dealt disjoint shards, training from
them equals the same steps taken by hand, one shard (and the next) is in memory at a time, and
a crashed run resumes to the same weights."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from elman.config import updated
from elman.data.shards import MANIFEST, Shards, read_encoded
from elman.errors import UserError
from elman.runs import preset
from elman.train import fit, make_optimizer, train_step
from elman.workflow import encode, evaluate_saved, new_model, prepare_data, train_model

SHARD_ROWS = 250


def small_config(archive: Path, cache: Path, **extra):
    settings = {
        "data": str(archive),
        "cache_dir": str(cache),
        "max_len": 60,
        "vocab_size": 2000,
        "hidden_size": 8,
        "val_size": 200,
        "epochs": 2,
        "patience": None,
        "eval_batch_size": 50,
        "batch_size": 16,
    }
    return updated(preset("imdb"), {**settings, **extra})


@pytest.fixture(scope="module")
def encoded(subset_archive, real_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("encoded") / "imdb"
    encode(small_config(subset_archive, real_cache), out, SHARD_ROWS, log=lambda _: None)
    return out


def quiet(_: str) -> None:
    pass


def test_the_shards_hold_the_split_exactly(encoded, subset_archive, real_cache):
    _, direct = prepare_data(small_config(subset_archive, real_cache), quiet)
    config, streamed = prepare_data(
        small_config(subset_archive, real_cache, encoded=str(encoded)), quiet
    )
    shards = streamed.train
    assert isinstance(shards, Shards) and len(shards) == len(direct.train) == 1000
    assert shards.rows == [SHARD_ROWS] * 4 and shards.steps == 60
    whole = [shards.batch(k, torch.arange(SHARD_ROWS))[0] for k in range(4)]
    for name in ("x", "y", "lengths"):
        joined = np.concatenate([getattr(part, name) for part in whole])
        np.testing.assert_array_equal(joined, getattr(direct.train, name))
        for split in ("val", "test"):
            np.testing.assert_array_equal(
                getattr(getattr(streamed, split), name), getattr(getattr(direct, split), name)
            )
    assert streamed.learned.vocabulary == direct.learned.vocabulary
    assert streamed.learned.classes == direct.learned.classes
    assert (config.model.vocab_size, config.model.max_len) == (2000, 60)
    assert not list(encoded.parent.glob(".*.tmp"))  # no staging folder left


def test_workers_are_dealt_disjoint_shards_every_epoch(encoded):
    shards = read_encoded(encoded, "imdb").train
    for size in (1, 2, 3):
        generator = torch.Generator().manual_seed(7)
        start = generator.get_state()
        plans = []
        for rank in range(size):
            generator.set_state(start)
            plans.append(shards.plan(16, False, rank, size, generator))
        assert len({len(plan) for plan in plans}) == 1  # the same number of steps for all
        read = [(k, int(r)) for plan in plans for k, rows in plan if rows is not None for r in rows]
        assert len(read) == len(set(read)) == 1000  # every row once, by exactly one worker
        dealt = [{k for k, rows in plan if rows is not None} for plan in plans]
        assert sum(len(mine) for mine in dealt) == 4 and set().union(*dealt) == {0, 1, 2, 3}
        if size == 3:  # 2 + 1 + 1 shards: the last two pad with steps that count nothing
            assert sorted(sum(rows is None for _, rows in plan) for plan in plans) == [0, 16, 16]
    again = torch.Generator().manual_seed(7)
    first = [(k, rows.tolist()) for k, rows in shards.plan(16, False, 0, 1, again)]
    second = [(k, rows.tolist()) for k, rows in shards.plan(16, False, 0, 1, again)]
    assert first != second  # a new deal each epoch
    with pytest.raises(UserError, match="4 training shard.*for 5 workers.*`shard_size`"):
        shards.plan(16, False, 0, 5, torch.Generator())


def by_hand(config, encoded: Path, size: int) -> dict[str, torch.Tensor]:
    """The weights after ``config``'s epochs of the steps ``size`` workers take on
    ``encoded``, taken in one process: each step on all the workers' rows together."""
    config, splits = prepare_data(updated(config, {"encoded": str(encoded)}), quiet)
    model = new_model(config, splits)
    optimizer = make_optimizer(model, config.train)
    shuffle = torch.Generator().manual_seed(config.train.seed)
    for _ in range(config.train.epochs):
        start, plans = shuffle.get_state(), []
        for rank in range(size):
            shuffle.set_state(start)
            plans.append(splits.train.plan(config.train.batch_size, False, rank, size, shuffle))
        for steps in zip(*plans, strict=True):
            parts = [splits.train.batch(shard, rows) for shard, rows in steps]
            parts = [part for part, counted in parts if counted]
            x = torch.from_numpy(np.concatenate([part.x for part in parts]))
            y = torch.from_numpy(np.concatenate([part.y for part in parts]))
            train_step(model, optimizer, x, y)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_training_from_shards_takes_the_planned_steps(
    encoded, subset_archive, real_cache, tmp_path
):
    config = small_config(subset_archive, real_cache, encoded=str(encoded))
    trained = train_model(config, tmp_path / "model", log=quiet, progress=False)
    expected = by_hand(config, encoded, size=1)
    for name, value in trained.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-7)
    history = [record["loss"] for record in trained_history(tmp_path)]
    assert history[1] < history[0]  # it learns from the streamed shards
    saved = (tmp_path / "model" / "config.json").read_text()
    assert str(encoded) in saved  # the saved run says where its data came from
    again = evaluate_saved(tmp_path / "model", log=quiet, device="cpu")  # on the folder's test
    assert again["samples"] == 400 and again["acc"] == trained.metrics["test_acc"]


def test_two_workers_read_their_own_shards_and_take_the_global_steps(
    encoded, subset_archive, real_cache, tmp_path
):
    from safetensors.torch import load_file

    out = tmp_path / "two"
    result = subprocess.run(
        [sys.executable, "-m", "elman", "train", "imdb", "--encoded", str(encoded)]
        + ["--hidden-size", "8", "--epochs", "2", "--patience", "none", "--batch-size", "16"]
        + ["--eval-batch-size", "50", "--nproc-per-node", "2", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    expected = by_hand(small_config(subset_archive, real_cache), encoded, size=2)
    for name, value in load_file(out / "weights.safetensors").items():
        # the same steps; only the workers' gradient average rounds differently
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-5)


def trained_history(folder: Path) -> list[dict]:
    return json.loads((folder / "model" / "history.json").read_text())


def test_one_shard_and_the_next_are_in_memory_at_a_time(encoded, monkeypatch):
    reads, original = [], Shards._read
    monkeypatch.setattr(Shards, "_read", lambda self, k: reads.append(k) or original(self, k))
    for rank, size in ((0, 1), (2, 3)):  # (rank 2 of 3 ends with steps that count nothing)
        shards = read_encoded(encoded, "imdb").train
        plan = shards.plan(16, False, rank, size, torch.Generator().manual_seed(3))
        reads.clear()
        held = []
        for step in plan:
            shards.batch(*step)
            held.append(1 + (shards._next is not None))
        order = list(dict.fromkeys(k for k, _ in plan))
        assert reads == order  # each once an epoch, in the plan's order
        assert max(held) == min(2, len(order))  # (this shard, and the next one being read)


def test_a_crashed_run_resumes_from_its_checkpoint_to_the_same_weights(
    encoded, subset_archive, real_cache, tmp_path, monkeypatch
):
    config = small_config(subset_archive, real_cache, encoded=str(encoded), checkpoint_every=5)
    config, splits = prepare_data(config, quiet)
    whole = new_model(config, splits)
    fit(whole, splits.train, splits.val, config.train, quiet, False, tmp_path / "a.pt")

    calls, original = [0], Shards.batch

    def crash_at_step_40(self, shard, rows):
        calls[0] += 1
        if calls[0] == 40:  # after the checkpoint at step 35 (of 64 in an epoch)
            raise RuntimeError("killed")
        return original(self, shard, rows)

    monkeypatch.setattr(Shards, "batch", crash_at_step_40)
    crashed = new_model(config, splits)
    with pytest.raises(RuntimeError, match="killed"):
        fit(crashed, splits.train, splits.val, config.train, quiet, False, tmp_path / "b.pt")
    monkeypatch.setattr(Shards, "batch", original)
    resumed = new_model(config, splits)
    fit(resumed, splits.train, splits.val, config.train, quiet, False, tmp_path / "b.pt")
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_bad_encoded_folders_are_refused_with_one_line(
    encoded, tmp_path, subset_archive, real_cache
):
    with pytest.raises(UserError, match="holds imdb data: train it with elman train imdb"):
        read_encoded(encoded, "text")
    with pytest.raises(UserError, match="holds no manifest.json.*elman encode"):
        read_encoded(tmp_path, "imdb")
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(encoded), str(broken)], check=True)
    with open(broken / "train-00002.x.npy", "r+b") as file:
        file.truncate(1000)  # a shard cut short
    with pytest.raises(UserError, match="train-00002 are missing or changed.*encode the data"):
        read_encoded(broken, "imdb")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        encode(small_config(subset_archive, real_cache), encoded, SHARD_ROWS, log=quiet)
    (broken / MANIFEST).write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_encoded(broken, "imdb")


def test_an_encode_that_fails_midway_leaves_no_folder(
    subset_archive, real_cache, tmp_path, monkeypatch
):
    import elman.data.shards as shards_module

    written, original = [], shards_module._write_part

    def fail_on_the_third(folder, name, split):
        written.append(name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return original(folder, name, split)

    monkeypatch.setattr(shards_module, "_write_part", fail_on_the_third)
    out = tmp_path / "encoded"
    with pytest.raises(OSError):
        encode(small_config(subset_archive, real_cache), out, SHARD_ROWS, log=quiet)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(shards_module, "_write_part", original)
    encode(small_config(subset_archive, real_cache), out, SHARD_ROWS, log=quiet)
    assert read_encoded(out, "imdb").train.rows == [SHARD_ROWS] * 4


def test_the_folder_replaces_the_data_settings(encoded, subset_archive, real_cache):
    given = small_config(subset_archive, real_cache, encoded=str(encoded))
    given = replace(given, model=replace(given.model, vocab_size=500, max_len=20))
    config, _ = prepare_data(given, quiet)
    assert (config.model.vocab_size, config.model.max_len) == (2000, 60)
    assert config.data.val_size == 200


def _mutated_manifest(manifest: dict, rng: np.random.Generator) -> dict:
    """One seeded change of a manifest: a field removed, retyped or set to an odd value, or a
    part's name pointing elsewhere."""
    manifest = json.loads(json.dumps(manifest))
    odd = [None, -1, 0, 10**12, 1.5, "x", "../train-00000", "/etc/passwd", [], {}, True]
    kind = rng.integers(4)
    if kind == 0:  # a top-level field
        key = str(rng.choice(sorted(manifest)))
        if rng.random() < 0.3:
            del manifest[key]
        else:
            manifest[key] = odd[rng.integers(len(odd))]
    elif kind == 1:  # a part's entry
        part = manifest[str(rng.choice(["train", "val", "test"]))]
        entry = part[rng.integers(len(part))]
        key = str(rng.choice(["name", "rows", "bytes"]))
        entry[key] = odd[rng.integers(len(odd))]
    elif kind == 2:  # a part's name outside the folder
        part = manifest[str(rng.choice(["train", "val", "test"]))]
        part[0]["name"] = str(rng.choice(["../outside", "/tmp/outside", "train-00000/../../x"]))
    else:  # the model's or the classes' fields
        target = manifest["model"] if rng.random() < 0.5 else manifest
        target["vocab_size" if target is manifest["model"] else "classes"] = odd[
            rng.integers(len(odd))
        ]
    return manifest


def _mutated_array(folder: Path, manifest: dict, rng: np.random.Generator) -> None:
    """One seeded change of a part's array (the manifest's byte count kept in step, so that
    only the contents can tell): another dtype, fewer rows, ids or labels out of range."""
    kind, parts = rng.integers(5), manifest["train"] + manifest["val"] + manifest["test"]
    part = parts[rng.integers(len(parts))]
    name, array = part["name"], str(rng.choice(["x", "y", "lengths"]))
    path = folder / f"{name}.{array}.npy"
    values = np.load(path)
    if kind == 0:
        values = values.astype(rng.choice([np.float64, np.int32, np.float16, np.uint8]))
    elif kind == 1:
        values = values[: max(0, len(values) - 1 - rng.integers(5))]
    elif kind == 2:
        values = values.copy()
        values.flat[rng.integers(values.size)] = rng.choice([-1, 2000, 10**9, 7])
    elif kind == 3:
        values = values.reshape(len(values), -1)[:, :1].squeeze(1) if values.ndim > 1 else values
    else:
        values = np.full_like(values, rng.choice([-5, 3]))
    np.save(path, values)
    part["bytes"] = sum((folder / f"{name}.{a}.npy").stat().st_size for a in ("x", "y", "lengths"))


def _read_everything(folder: Path) -> None:
    splits = read_encoded(folder, "imdb")
    for shard in range(len(splits.train.names)):
        splits.train._read(shard)


def test_fuzzed_folders_are_read_whole_or_refused_with_one_line(encoded, tmp_path):
    """60 seeded mutations of the manifest and of the arrays: each folder is read entirely
    (every shard) or refused with a UserError; never another exception, and never a file
    outside the folder (a sentinel beside it would be read as a shard)."""
    original = json.loads((encoded / MANIFEST).read_text())
    outcomes = {"refused": 0, "read": 0}
    for seed in range(60):
        rng = np.random.default_rng(seed)
        folder = tmp_path / f"fuzz-{seed}"
        subprocess.run(["cp", "-r", str(encoded), str(folder)], check=True)
        manifest = json.loads(json.dumps(original))
        if seed % 2:
            _mutated_array(folder, manifest, rng)
        else:
            manifest = _mutated_manifest(manifest, rng)
        (folder / MANIFEST).write_text(json.dumps(manifest))
        try:
            _read_everything(folder)
            outcomes["read"] += 1
        except UserError as error:
            assert "\n" not in str(error) and "encode" in str(error)
            outcomes["refused"] += 1
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    assert outcomes["refused"] >= 40, outcomes  # (most mutations break what the reader needs)


def test_shard_names_never_leave_the_folder(encoded, tmp_path):
    folder = tmp_path / "inside" / "imdb"
    subprocess.run(["mkdir", "-p", str(folder.parent)], check=True)
    subprocess.run(["cp", "-r", str(encoded), str(folder)], check=True)
    for array in ("x", "y", "lengths"):  # a valid shard, one folder up
        subprocess.run(
            [
                "cp",
                str(folder / f"train-00000.{array}.npy"),
                str(tmp_path / f"outside.{array}.npy"),
            ],
            check=True,
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["train"][0]["name"] = "../../outside"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="is not one elman encode writes"):
        read_encoded(folder, "imdb")
