"""Data-parallel training on torch.distributed: 2 gloo workers on this machine, real reviews.

The jobs run as a user starts them (``elman train ... --nproc-per-node 2``, ``torchrun ... -m
elman``, or processes given the launcher's variables by hand), on a subset of the real
archive: 1,200 training and 400 test reviews, 60 words, 2,000 ids.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TEST_REVIEWS, free_port
from elman.distributed import PEER_LOST, World, failure_line


def job_args(archive: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "imdb",
        "--data",
        str(archive),
        "--cache-dir",
        str(cache),
        "--max-len",
        "60",
        "--vocab-size",
        "2000",
        "--hidden-size",
        "8",
        "--val-size",
        "200",
        "--epochs",
        "2",
        "--patience",
        "none",
        "--eval-batch-size",
        "50",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def elman(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "elman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "weights.safetensors")


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_workers(subset_archive, real_cache, tmp_path_factory) -> Path:
    """One 2-worker run (per-worker batch 16), uninterrupted: the run the others equal."""
    out = tmp_path_factory.mktemp("two") / "model"
    args = job_args(subset_archive, real_cache, out, "--batch-size", "16", "--nproc-per-node", "2")
    result = elman(*args)
    assert result.returncode == 0, result.stderr
    assert "2 workers, global batch 32" in result.stdout
    for rank in (0, 1):  # each worker says its share of the cores
        assert f"elman: rank {rank}/2 (pid " in result.stdout
    return out


def test_two_workers_of_16_train_as_one_process_of_32(
    two_workers, subset_archive, real_cache, tmp_path
):
    one = tmp_path / "one"
    result = elman(*job_args(subset_archive, real_cache, one, "--batch-size", "32"))
    assert result.returncode == 0, result.stderr
    together, alone = weights(two_workers), weights(one)
    assert together.keys() == alone.keys()
    for name in together:  # the same steps; only the gradient average's rounding differs
        torch.testing.assert_close(together[name], alone[name], rtol=1e-4, atol=1e-5)
        assert not torch.equal(together[name], torch.zeros_like(together[name]))
    assert abs(metrics(two_workers)["test_acc"] - metrics(one)["test_acc"]) <= 2 / 400


def test_evaluation_over_two_workers_equals_one_process_exactly(two_workers):
    """The 2-worker run's test scores, against the saved weights evaluated in this process."""
    from elman.data import SOURCES
    from elman.inference import load
    from elman.train import evaluate

    trained = load(two_workers)
    splits = SOURCES["imdb"].read(trained.config.data, trained.fitted.encoding, lambda _: None)
    alone = evaluate(trained.model, splits.test, trained.config.train.eval_batch_size)
    assert len(splits.test) == 2 * TEST_REVIEWS  # 8 batches of 50: 4 on each worker
    assert alone["acc"] == metrics(two_workers)["test_acc"]
    assert alone["loss"] == metrics(two_workers)["test_loss"]


def test_torchrun_starts_the_same_job(two_workers, subset_archive, real_cache, tmp_path):
    out = tmp_path / "torchrun"
    args = job_args(subset_archive, real_cache, out, "--batch-size", "16")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "elman", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    for name, value in weights(two_workers).items():
        assert torch.equal(weights(out)[name], value), name


def test_two_nodes_meeting_at_a_rendezvous_train_as_one_node(
    two_workers, subset_archive, real_cache, tmp_path
):
    """The many-machine path, on one machine: two torchrun launchers (two "nodes" of one
    worker each, as the README's two-node command starts them) meet at a c10d rendezvous and
    train the same job as two workers of one node, to the bit (one thread each, as there)."""
    out = tmp_path / "nodes"
    args = job_args(subset_archive, real_cache, out, "--batch-size", "16", "--threads", "1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    command += ["--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "two-nodes"]
    command += ["--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "elman", *args]
    nodes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert "2 workers, global batch 32" in "".join(stdout for stdout, _ in outputs)
    for name, value in weights(two_workers).items():
        assert torch.equal(weights(out)[name], value), name


def test_workers_with_different_settings_are_refused(subset_archive, real_cache, tmp_path):
    """Two processes given the launcher's variables by hand (any launcher may start them),
    one of them with another learning rate: both refuse to start, saying why."""
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "elman"]
            + job_args(subset_archive, real_cache, tmp_path / "mixed", "--lr", lr),
            env={**os.environ, **env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, lr in ((0, "0.001"), (1, "0.002"))
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for rank, (worker, (_, err)) in enumerate(zip(workers, outputs, strict=True)):
        assert worker.returncode == 1, err
        assert f"elman: error: rank {rank}: rank 1's settings differ from rank 0's" in err
        assert "Traceback" not in err
    assert not (tmp_path / "mixed" / "checkpoint.pt").exists()


def _worker_pids(stdout) -> dict[int, int]:
    """Read the job's output until both workers said their pid."""
    pids: dict[int, int] = {}
    for line in stdout:
        if line.startswith("elman: rank ") and "(pid " in line:
            rank = int(line.split()[2].split("/")[0])
            pids[rank] = int(line.split("(pid ")[1].split(")")[0])
        if len(pids) == 2:
            return pids
    raise AssertionError("the workers never said their pids")


def _wait_for(path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


SLOW = ("--batch-size", "2", "--epochs", "3")  # 250 steps an epoch: time to stop it midway


@pytest.fixture(scope="module")
def uninterrupted_small_batches(subset_archive, real_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small-batches") / "model"
    result = elman(*job_args(subset_archive, real_cache, out, *SLOW, "--nproc-per-node", "2"))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("fault", ["kill a worker", "ctrl-c"])
def test_a_stopped_job_resumes_to_the_uninterrupted_weights(
    fault, uninterrupted_small_batches, subset_archive, real_cache, tmp_path
):
    """A worker killed mid-epoch (SIGKILL) stops the whole job at once with one line naming
    it; Ctrl-C stops every worker at a step boundary after saving. ``--resume`` then ends
    bit-identical to the uninterrupted 2-worker run."""
    out = tmp_path / "model"
    args = job_args(subset_archive, real_cache, out, *SLOW, "--checkpoint-every", "20")
    job = subprocess.Popen(
        [sys.executable, "-m", "elman", *args, "--nproc-per-node", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = _worker_pids(job.stdout)
    _wait_for(out / "checkpoint.pt")  # mid-epoch: after 20 of the epoch's 250 steps
    stopped = time.monotonic()
    if fault == "kill a worker":
        os.kill(pids[1], signal.SIGKILL)
    else:
        job.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the launcher
    rest, err = job.communicate(timeout=120)
    assert time.monotonic() - stopped < 30  # no hang
    lines = [line for line in err.splitlines() if line.startswith("elman:")]
    if fault == "kill a worker":
        assert job.returncode == 1
        assert lines[-1].startswith("elman: error: worker rank 1 was killed (SIGKILL)"), err
    else:
        assert job.returncode == 130
        assert "Interrupted: saved" in rest and lines[-1].startswith("elman: stopped by SIGINT")
    assert "Traceback" not in err, err
    resumed = elman("train", "imdb", "--resume", str(out), "--nproc-per-node", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout
    for name, value in weights(uninterrupted_small_batches).items():
        assert torch.equal(weights(out)[name], value), name


def test_resuming_with_another_number_of_workers_is_refused(two_workers, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(two_workers, copy)  # its last checkpoint is a 2-worker run's
    (copy / "metrics.json").unlink()  # (as if stopped before its end: a finished run is refused)
    result = elman("train", "imdb", "--resume", str(copy), "--no-progress")
    assert result.returncode == 1
    assert "resume with --nproc-per-node 2" in result.stderr, result.stderr


def test_a_worker_takes_its_part_of_every_global_batch():
    batch = torch.arange(33)
    parts = [World(rank, 2).shard(batch) for rank in (0, 1)]
    assert torch.equal(torch.cat([rows for rows, _ in parts]), batch)
    assert [len(rows) for rows, _ in parts] == [17, 16]  # (fit reweights their mean losses)
    assert all(counted for _, counted in parts)
    rows, counted = World(2, 3).shard(torch.arange(2))  # a worker left without rows
    assert len(rows) == 1 and not counted
    assert World().shard(batch) == (batch, True)


def test_the_world_comes_from_the_launchers_variables():
    assert World.from_environment({}) == World()
    seen = World.from_environment(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert seen == World(3, 4, 1, 2) and not seen.main and seen.distributed


def test_the_failure_line_names_the_cause_not_the_workers_it_stopped():
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    def failure(rank: int, exitcode: int) -> ProcessFailure:
        return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file="")

    line = failure_line({0: failure(0, PEER_LOST), 1: failure(1, -signal.SIGKILL)})
    assert line.startswith("worker rank 1 was killed (SIGKILL); the job stopped")
    stopped_by_the_launcher = failure(0, -signal.SIGTERM)
    line = failure_line({0: stopped_by_the_launcher, 1: failure(1, -signal.SIGKILL)})
    assert line.startswith("worker rank 1 was killed (SIGKILL)")
    assert "worker rank 0 exited with status 1" in failure_line({0: failure(0, 1)})
