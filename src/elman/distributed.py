"""Data-parallel training on ``torch.distributed``: one process per worker, each with a copy of
the model, the gradients averaged by ``DistributedDataParallel`` after every backward pass.

elman writes no cluster layer of its own. PyTorch's launcher (``torchrun``, or
``torch.distributed.run``, which ``elman train --nproc-per-node N`` calls) starts the workers and
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; ``World.from_environment`` reads them, ``joined`` connects the workers (gloo on
the CPU, NCCL on CUDA), and the training loop asks its ``World`` for

- its part of each global batch (``shard``: ``batch_size`` rows of ``batch_size · size``),
- sums over all workers (``total``: the batch's loss, Ctrl-C, a non-finite loss: every worker
  then takes the same decision at the same step),
- the outputs of every worker's rows of a split (``gathered``: metrics over the whole split).

A single process is ``World()``: every method is then the identity, nothing is sent.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from elman.errors import UserError

PEER_LOST = 75  # a worker's exit status when another worker stopped (it is not the cause)
TIMEOUT = datetime.timedelta(minutes=10)  # longest wait in a collective (a hung peer)


class PeerLost(RuntimeError):
    """Another worker stopped or died: this one cannot go on, and is not the cause."""

    @classmethod
    def after(cls, error: BaseException) -> PeerLost:
        """The loss of a peer, as ``error`` (a failed collective) said it, in one line."""
        return cls(str(error).splitlines()[0] if str(error) else type(error).__name__)


@dataclass(frozen=True)
class World:
    """Where this process stands among the job's workers: ``rank`` of ``size``, and
    ``local_rank`` of the ``local_size`` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> World:
        """The world a launcher describes (torchrun's variables); none: one process."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            return cls(
                rank=int(environ["RANK"]),
                size=int(environ["WORLD_SIZE"]),
                local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])),
                local_size=int(environ.get("LOCAL_WORLD_SIZE", environ["WORLD_SIZE"])),
            )
        except (KeyError, ValueError) as error:
            raise UserError(
                f"the launcher's variables are incomplete or not numbers ({error}): set RANK, "
                "WORLD_SIZE, MASTER_ADDR and MASTER_PORT, or start with torchrun"
            ) from None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one worker that prints, and writes checkpoints and the model folder."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """This worker's rows of a global batch (the rows of all workers' batches, in the
        epoch's seeded order: worker r takes the r-th of ``size`` near-equal parts) and whether
        they count. A worker left without rows (the epoch's last batch) reads one row that does
        not count, so that it still takes part in the gradient average (``fit`` scales each
        worker's loss by its share of the counted samples)."""
        if not self.distributed:
            return batch, True
        part = torch.tensor_split(batch, self.size)[self.rank]
        if len(part) == 0:
            return batch[:1], False
        return part, True

    def total(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over all workers (float64: counts stay exact)."""
        if not self.distributed:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64)
        _collective(dist.all_reduce, summed)
        return summed.tolist()

    def gathered(self, piece: torch.Tensor | None) -> torch.Tensor | None:
        """Every worker's ``piece`` (rows on the CPU, None: no rows), concatenated in rank
        order."""
        if not self.distributed:
            return piece
        pieces: list[torch.Tensor | None] = [None] * self.size
        _collective(dist.all_gather_object, pieces, piece)
        present = [p for p in pieces if p is not None]
        return torch.cat(present) if present else None

    def barrier(self) -> None:
        if self.distributed:
            _collective(dist.barrier)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training step calls: ``DistributedDataParallel`` around ``model``
        (which broadcasts rank 0's weights to every worker first), or ``model`` itself."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        # elman's buffers (input statistics) never change: no broadcast before each forward
        fixed_buffers = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        return _collective(
            DistributedDataParallel,
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            **fixed_buffers,
        )


def _collective(call, *args, **kwargs):
    """Run a collective; a worker that stopped shows up as a connection error here."""
    try:
        return call(*args, **kwargs)
    except (RuntimeError, dist.DistError) as error:
        raise PeerLost.after(error) from None


@contextlib.contextmanager
def joined(world: World, device: torch.device) -> Iterator[None]:
    """The process group of ``world`` for the block: gloo on the CPU, NCCL on CUDA (each worker
    on its own GPU, ``cuda:local_rank``)."""
    if not world.distributed:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=TIMEOUT)
    except (RuntimeError, ValueError, dist.DistError) as error:
        raise UserError(
            f"rank {world.rank} could not join the job ({str(error).splitlines()[0]}): check "
            "MASTER_ADDR and MASTER_PORT, and that every worker was started"
        ) from None
    try:
        yield
    except (PeerLost, dist.DistError) as error:  # (DDP's all-reduce fails inside backward)
        # The group is broken: tearing it down can abort the process. It ends as it is.
        raise PeerLost.after(error) from None
    except BaseException:
        dist.destroy_process_group()
        raise
    _collective(dist.barrier)  # every worker done before any leaves the group
    dist.destroy_process_group()


def device_for(world: World, device: torch.device) -> torch.device:
    """Each worker's own GPU on CUDA (``cuda:local_rank``); the CPU is shared."""
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def share_cores(world: World, threads: int | None, cores: int | None = None) -> int:
    """Set torch's and numba's threads to ``threads``, or to this worker's share of the
    machine's cores (cores / local workers, at least 1), so N workers never run more threads
    than there are cores. Returns the number chosen."""
    if threads is None:
        cores = cores or len(os.sched_getaffinity(0))
        threads = max(1, cores // world.local_size)
    torch.set_num_threads(threads)
    with contextlib.suppress(ImportError, ValueError):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return threads


def fingerprint(*parts: object) -> str:
    """A short digest of settings and arrays (numpy arrays by their bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):  # (its bytes, hashed in place: no copy)
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def check_same(world: World, what: dict[str, str]) -> None:
    """Refuse to start when workers differ in anything ``what`` names (its values: each
    worker's fingerprint of its settings, of its data...)."""
    if not world.distributed:
        return
    everyone: list[dict[str, str] | None] = [None] * world.size
    _collective(dist.all_gather_object, everyone, what)
    for rank, theirs in enumerate(everyone):
        differing = [name for name in what if theirs.get(name) != everyone[0].get(name)]
        if differing:
            raise UserError(
                f"rank {rank}'s {' and '.join(differing)} differ from rank 0's: start every "
                "worker with the same command, settings and data"
            )


def check_workers(workers: int, device: str) -> None:
    """Refuse more local workers than the machine has cores (on the CPU) or GPUs (on CUDA):
    each would get a fraction of one, and its own copy of the model and the data."""
    import torch

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    available = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    if workers > available:
        what = f"{available} GPU(s)" if cuda else f"{available} core(s)"
        raise UserError(
            f"--nproc-per-node {workers} starts more workers than this machine's {what}, one "
            f"each: give at most {available}"
        )


def launch(workers: int, argv: list[str]) -> int:
    """Run ``elman`` with ``argv`` as ``workers`` local processes through PyTorch's launcher
    (``torchrun --standalone --nproc-per-node workers -m elman argv``). A worker that fails
    stops the others; the cause is said in one line. Returns the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # Each worker sets its threads itself (share_cores); this also keeps torchrun's notice quiet.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={workers}", "--module", "elman", *argv]
    )
    _quiet_launcher()
    try:
        run(args)
    except ChildFailedError as error:
        print(f"elman: error: {failure_line(error.failures)}", file=sys.stderr)
        return 1
    except SignalException as error:
        print(f"elman: stopped by {error.sigval.name}: every worker stopped", file=sys.stderr)
        return 130
    return 0


def failure_line(failures: dict) -> str:
    """One line for a failed job: the worker that caused it (not one that stopped because
    another did), how it ended."""
    # The others end with PEER_LOST, or by the launcher's SIGTERM as it stops the job.
    collateral = (PEER_LOST, -signal.SIGTERM)
    causes = {rank: f for rank, f in failures.items() if f.exitcode not in collateral}
    causes = causes or failures
    rank = min(causes, key=lambda r: (causes[r].exitcode >= 0, causes[r].timestamp, r))
    failure = causes[rank]
    if failure.exitcode < 0:
        how = f"was killed ({failure.signal_name()})"
    else:
        how = f"exited with status {failure.exitcode}"
    return (
        f"worker rank {rank} {how}; the job stopped on every worker (a run with --out "
        "continues from its last checkpoint with --resume DIR)"
    )


def _quiet_launcher() -> None:
    """torchrun's agent logs warnings and a multi-line failure report; elman says what
    happened in one line instead."""
    import logging

    for name in ("torch.distributed.elastic", "torch.distributed.run"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
