"""Training and evaluation: Keras' RMSprop, the loss of each task, early stopping, and
checkpoints from which an interrupted run resumes to the same bits.

``fit`` trains any module whose ``task`` attribute says what its outputs are (see ``TASKS``);
``evaluate`` measures it. The whole jobs (data, summary, fit, test, saved folder) are in
``elman.workflow``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elman.config import DEVICES, TrainConfig
from elman.data.shards import Shards
from elman.data.split import Split, batch_order
from elman.distributed import PeerLost, World, device_for
from elman.errors import UserError
from elman.files import atomic_write
from elman.models import batch_outputs, device_of
from elman.settings import choose


class RMSprop(torch.optim.Optimizer):
    """RMSprop as Keras has it: ``v = rho·v + (1-rho)·g²; w -= lr·g / sqrt(v + epsilon)``.

    torch's own RMSprop puts epsilon outside the square root and defaults to lr 0.01, alpha 0.99;
    this matches Keras (lr 0.001, rho 0.9, epsilon 1e-7 inside the root) so runs compare.
    """

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(params, {"lr": lr, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        for group in self.param_groups:
            lr, rho, epsilon = group["lr"], group["rho"], group["epsilon"]
            params = [param for param in group["params"] if param.grad is not None]
            for param in params:
                if not self.state[param]:
                    self.state[param]["square_avg"] = torch.zeros_like(param)
            grads = [param.grad for param in params]
            square_avgs = [self.state[param]["square_avg"] for param in params]
            # One multi-tensor call per operation instead of one per parameter and operation.
            torch._foreach_mul_(square_avgs, rho)
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - rho)
            denominators = torch._foreach_add(square_avgs, epsilon)
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(params, grads, denominators, value=-lr)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer``: Keras' RMSprop (lr, rho, epsilon), or torch's Adam (lr, and epsilon
    as Keras' Adam has it)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.epsilon)
    return RMSprop(model.parameters(), lr=config.lr, rho=config.rho, epsilon=config.epsilon)


def bce_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy on logits (stable) and the fraction classified right."""
    loss = F.binary_cross_entropy_with_logits(logits, y)
    accuracy = ((logits > 0).float() == y).float().mean()
    return loss, accuracy


# What a model's outputs mean, and so its loss and the metric shown beside it:
# - binary: logits (B,) of the second class, y 0/1 -> binary cross-entropy, accuracy
# - multiclass: logits (B, C), y class indices -> cross-entropy (softmax), accuracy
# - forecast: next-step predictions (B, T, F), y targets with NaN where there is none
#   -> mean squared error, mean absolute error (over the targets that exist)
TASKS = ("binary", "multiclass", "forecast")


def metric_name(task: str) -> str:
    return "mae" if task == "forecast" else "acc"


def loss_and_metric(
    task: str, outputs: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss and the task's metric (see ``TASKS``), both means over the batch."""
    if task == "binary":
        return bce_and_accuracy(outputs, y)
    if task == "multiclass":  # (outputs (..., C) and y (...): one class per sample or step)
        loss = F.cross_entropy(outputs.flatten(0, -2), y.flatten())
        return loss, (outputs.argmax(-1) == y).float().mean()
    has_target = ~torch.isnan(y)
    error = outputs[has_target] - y[has_target]
    return (error**2).mean(), error.abs().mean()


def batch_weight(task: str, y: torch.Tensor) -> int:
    """How many predictions a batch's means are taken over (to average across batches)."""
    return int((~torch.isnan(y)).sum()) if task == "forecast" else y.numel()


def task_of(model: nn.Module) -> str:
    return getattr(getattr(model, "module", model), "task", "binary")  # (DDP wraps a module)


def _tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split.x), torch.from_numpy(split.y)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU. Asking for CUDA where there is none is an
    error, not a silent fallback."""
    choose(name, DEVICES, "device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("`device` cuda: this machine has no CUDA device; use `device` cpu or auto")
    return torch.device(name)


ONE_PROCESS = World()  # (frozen: a default argument that cannot change)


@dataclass(frozen=True)
class StepOptions:
    """How ``train_step`` runs (``fit`` takes them from its ``TrainConfig``)."""

    clip_norm: float | None = None  # clip the gradients' global norm to this
    chunk: int | None = None  # truncated backpropagation: steps read per update (None: all)
    in_graph: bool = False  # read nothing back to Python, so that a CUDA graph records the step

    def __post_init__(self) -> None:
        if self.in_graph and self.chunk:
            raise ValueError("a step in a CUDA graph reads whole sequences: give chunk=None")


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    options: StepOptions = StepOptions(),
    *,
    weight: float | None = None,
    world: World = ONE_PROCESS,
    stop: bool = False,
) -> list[float] | torch.Tensor:
    """The one training step (``fit``'s, the analyses', the CUDA graph's): forward, the
    task's loss, backward, gradient clipping, update.

    Returns the totals [loss·weight, metric·weight, weight, not finite, stop], summed over the
    workers in ONE collective before backward: an epoch's sums and the decisions every worker
    must take alike (``stop``: Ctrl-C on any of them). ``weight``: how many predictions the
    batch's means are over (None: ``batch_weight``; 0: its rows do not count, so one process
    updates nothing and a worker takes part with weight 0). A loss that is not finite on any
    worker is returned before any update, so the weights stay as they were (``fit`` stops
    there; so can any caller).

    ``options.chunk``: truncated backpropagation through time (``model.read_chunk``): the state
    is carried from chunk to chunk, detached (gradients stop at a chunk's start), with one
    update per chunk that has a loss: every chunk when forecasting, the last when classifying.

    ``options.in_graph``: nothing is read back to Python, so that a CUDA graph can hold the
    step whole (``CapturedStep``); returns [loss, metric] (2,) on the device instead. The
    gradients must be None on entry; a loss that is not finite zeroes them on the device
    instead of skipping the update (RMSprop's running average still decays by ``rho``).
    """
    task = task_of(model)
    weight = batch_weight(task, y) if weight is None and not options.in_graph else weight
    totals = [0.0, 0.0, 0.0, 0.0, float(stop)]
    if not (weight or options.in_graph or world.distributed):
        return totals
    for outputs, target in _predictions(model, x, y, task, options.chunk):
        loss, metric = loss_and_metric(task, outputs, target)
        if options.in_graph:
            _update(model, optimizer, loss, options.clip_norm, in_graph=True)
            return torch.stack([loss.detach(), metric.detach()])
        part = weight if options.chunk is None else batch_weight(task, target)
        if not part and not world.distributed:
            continue  # (a chunk with nothing to forecast)
        finite = bool(torch.isfinite(loss))
        sums = world.total(
            [loss.item() * part, metric.item() * part, part, float(not finite), float(stop)]
        )
        totals = [a + b for a, b in zip(totals[:4], sums[:4], strict=True)] + [sums[4]]
        if sums[3]:
            return totals
        if world.distributed:
            _shared_update(model, optimizer, loss, options.clip_norm, world, part, sums[2])
        else:
            _update(model, optimizer, loss, options.clip_norm)
    return totals


def _shared_update(model, optimizer, loss, clip_norm, world: World, weight, total) -> None:
    """``_update`` among workers, whose weights in the step's ``total`` differ. DDP averages
    the workers' gradients, so each worker's mean loss is scaled by ``size · weight / total``:
    the average is then the gradient of the mean over all the step's samples."""
    share = world.size * weight / total
    try:
        _update(model, optimizer, loss * share if share != 1.0 else loss, clip_norm)
    except RuntimeError as error:  # DDP's all-reduce, in backward, lost a worker
        raise PeerLost.after(error) from None


def _predictions(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, chunk: int | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The outputs to take a loss of, with their targets: the whole batch's; or, with
    ``chunk``, each chunk's that has a loss, the state carried (detached) from one to the next
    (a chunk without a loss is read without gradients)."""
    if not chunk:
        yield model(x), y
        return
    state = None
    for start in range(0, x.shape[1], chunk):
        piece, final = x[:, start : start + chunk], start + chunk >= x.shape[1]
        if task != "forecast" and not final:
            with torch.no_grad():
                _, state = model.read_chunk(piece, state)
            continue
        outputs, after = model.read_chunk(piece, state)
        yield outputs, y[:, start : start + chunk] if task == "forecast" else y
        state = after.detach()  # (after the update: gradients stop at the next chunk's start)


def _update(
    model: nn.Module, optimizer, loss: torch.Tensor, clip_norm: float | None, in_graph=False
) -> None:
    """Backward, gradient clipping, one optimizer step. ``in_graph``: a loss that is not finite
    zeroes the gradients on the device (the weights stay), with no ``if`` read in Python."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if in_graph:
        not_finite = ~torch.isfinite(loss)
        for param in model.parameters():
            if param.grad is not None:
                param.grad.masked_fill_(not_finite, 0.0)  # (NaN · 0 would stay NaN)
    if clip_norm:
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()


class CapturedStep:
    """``fit``'s training step recorded once in a CUDA graph and replayed for every batch of the
    same shape (PyTorch's whole-network capture). The step is launch-bound: dozens of small
    kernels, each a few microseconds of work and as long again to launch; a replay launches them
    all at once.

    The first ``WARM_UP`` steps run eagerly on a side stream (cuBLAS and cuDNN set themselves up,
    the optimizer creates its state: none of that may happen inside a capture). Then each new
    (shape, learning rate) is captured from the batch in hand, and each batch after is copied
    into the graph's input buffers before a replay. A batch of another shape (an epoch's short
    last batch) steps eagerly on the same weights and optimizer state, which the graph updates
    in place. The learning rate is read when the step is recorded, so an epoch that changes it
    records again. If recording fails (a model whose forward reads values back to Python, or
    changes shape with its data), ``fit`` says so once and steps eagerly from then on."""

    WARM_UP = 3

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        clip_norm: float | None,
        log: Callable[[str], None],
    ) -> None:
        self.model, self.optimizer, self.log = model, optimizer, log
        self.options = StepOptions(clip_norm, in_graph=True)
        self.eager_steps, self.failed = 0, False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key: tuple | None = None
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.outputs: torch.Tensor | None = None

    @staticmethod
    def usable(model: nn.Module, optimizer, config: TrainConfig, world: World) -> bool:
        """Where ``fit`` captures its step: on CUDA, one process, whole sequences, Keras'
        RMSprop (torch's Adam keeps its step count on the CPU), unless ``cuda_graph`` is off."""
        return (
            config.cuda_graph == "auto"
            and device_of(model).type == "cuda"
            and not world.distributed
            and not config.tbptt
            and isinstance(optimizer, RMSprop)
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train one step on (x, y); returns [loss, metric] (2,) on the device."""
        learning_rates = tuple(group["lr"] for group in self.optimizer.param_groups)
        key = (x.shape, x.dtype, y.shape, y.dtype, learning_rates)
        if self.graph is not None and key == self.key:
            return self._replay(x, y)
        if (
            self.failed
            or self.eager_steps < self.WARM_UP
            or (
                self.key is not None and key[:4] != self.key[:4]  # a batch of another shape
            )
        ):
            return self._eager(x, y)
        try:
            self._record(x, y, key)
        except Exception as error:  # noqa: BLE001 (any failure to record: step eagerly)
            self.graph, self.key, self.failed = None, None, True
            torch.cuda.synchronize()
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.log(f"CUDA graph capture failed ({reason}); training eagerly")
            return self._eager(x, y)
        return self._replay(x, y)

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        if self.eager_steps >= self.WARM_UP:
            return self._step(x, y)
        self.eager_steps += 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self._step(x, y)
        torch.cuda.current_stream().wait_stream(side)
        return outputs

    def _record(self, x: torch.Tensor, y: torch.Tensor, key: tuple) -> None:
        self.graph = self.outputs = None  # the previous recording's memory goes back first
        inputs = (x.clone(), y.clone())
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates its own gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._step(*inputs)
        self.graph, self.key, self.inputs, self.outputs = graph, key, inputs, outputs

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return train_step(self.model, self.optimizer, x, y, self.options)  # type: ignore[return-value]

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert self.graph is not None and self.inputs is not None and self.outputs is not None
        self.inputs[0].copy_(x, non_blocking=True)
        self.inputs[1].copy_(y, non_blocking=True)
        self.graph.replay()
        return self.outputs


def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int = 1000,
    outputs: torch.Tensor | None = None,
    world: World | None = None,
) -> dict[str, float]:
    """Loss and the task's metric (``acc`` or ``mae``) over a whole split; ``outputs``: the
    model's outputs for it (``predict_outputs``), when the caller has them already. With a
    ``world``, the workers share the split's batches and each gets the whole split's scores."""
    task = task_of(model)
    if outputs is None:
        outputs = predict_outputs(model, split.x, batch_size, world)
    with torch.no_grad():
        loss, metric = loss_and_metric(task, outputs, torch.from_numpy(split.y))
    return {"loss": loss.item(), metric_name(task): metric.item()}


def predict_outputs(
    model: nn.Module, x: np.ndarray, batch_size: int = 1000, world: World | None = None
) -> torch.Tensor:
    """``elman.models.batch_outputs`` shared by a ``world`` of workers: each computes a
    contiguous run of the batches and all get every output, in order (the same batches as one
    process, so the same numbers)."""
    world = world or World()
    if not world.distributed or len(x) == 0:
        return batch_outputs(model, x, batch_size)
    batches = -(-len(x) // batch_size)
    per_worker = -(-batches // world.size)
    start, end = (min(r * per_worker * batch_size, len(x)) for r in (world.rank, world.rank + 1))
    mine = batch_outputs(model, x[start:end], batch_size) if end > start else None
    return world.gathered(mine)


@dataclass
class TrainingState:
    """Everything that decides how training goes on from here: with the model and optimizer
    state, a checkpoint of it resumes a run to the same bits as if it never stopped."""

    epoch: int = 1  # the epoch in progress, from 1
    step: int = 0  # batches of it already trained
    shuffle_state: torch.Tensor | None = None  # the shuffling generator at the epoch's start
    loss_sum: float = 0.0  # running sums over the epoch's batches so far
    metric_sum: float = 0.0  # of the task's metric (accuracy or MAE), weighted
    seen: int = 0  # predictions so far (samples; targets when forecasting)
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = float("inf")
    best_weights: dict[str, torch.Tensor] | None = None
    waited: int = 0  # epochs since val_loss last improved
    finished: bool = False
    workers: int = 1  # the world size it trains with (its global batch, its data order)
    run: str = ""  # its settings' and data's digest (``workflow._run_key``; "": not known)


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState
) -> None:
    """Model, optimizer and training state in one file, written atomically."""
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": asdict(state)},
        buffer,
    )
    atomic_write(path, buffer.getvalue())


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> TrainingState:
    """Restore model and optimizer from ``path`` (in place) and return the training state.

    Only tensors and plain values are unpickled (``weights_only``): a file holding anything else
    is refused without running any of it."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # (torch warns about foreign pickle protocols)
            warnings.simplefilter("ignore")
            saved = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        reason = (
            "refused to unpickle it: it holds more than tensors and plain values"
            if isinstance(error, pickle.UnpicklingError)
            else f"it is truncated or not a checkpoint: {type(error).__name__}"
        )
        raise UserError(
            f"{path} is not a checkpoint elman wrote ({reason}); start a new run with --overwrite"
        ) from None
    try:
        state = _checked_state(saved["state"], model)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _check_optimizer_state(optimizer)
        return state
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise UserError(
            f"cannot resume from {path} ({_last_line(error)}): it does not belong to this "
            "model; start a new run with --overwrite"
        ) from None


def _last_line(error: Exception) -> str:
    """An exception's gist for a one-line message (PyTorch's span several lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1][:100] if lines else ''}"


def _checked_state(saved: dict, model: nn.Module) -> TrainingState:
    """A checkpoint's training state, each field of the type ``TrainingState`` gives it (a
    field of another type would fail later, mid-run, far from its cause)."""
    state = TrainingState(**saved)  # (an unknown or missing name: TypeError)
    whole = [("epoch", 1), ("step", 0), ("waited", 0), ("workers", 1)]
    for name, least in whole:
        value = getattr(state, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} is {value!r}")
    for name in ("loss_sum", "metric_sum", "seen", "seconds", "best_loss"):  # (sums: floats)
        value = getattr(state, name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{name} is {value!r}")
    if state.seen < 0:
        raise ValueError(f"seen is {state.seen}")
    if not isinstance(state.finished, bool) or not isinstance(state.run, str):
        raise ValueError("finished or run is of another type")
    generator = torch.Generator()
    if state.shuffle_state is not None:
        generator.set_state(state.shuffle_state)  # (a state of another size: RuntimeError)
    if not isinstance(state.history, list) or not all(
        isinstance(record, dict) and isinstance(record.get("epoch"), int)
        for record in state.history
    ):
        raise ValueError("the history is not one record per epoch")
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)  # (checked as the weights are; then replaced)
    return state


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Each parameter's optimizer state (running averages) of the parameter's shape."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != parameter.shape:
                    raise ValueError(f"the optimizer's {name} has shape {tuple(value.shape)}")


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C only raises a flag, read at safe points (between steps), so
    an interruption never falls between a weight update and its bookkeeping. A second Ctrl-C
    interrupts at once. Outside the main thread, signals cannot be caught: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(checkpoint, model, optimizer, state, log) -> None:
    """Save where training stands and stop (Ctrl-C)."""
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, optimizer, state)
        log(f"Interrupted: saved {checkpoint}; continue with --resume")
    raise KeyboardInterrupt


def _next_epoch(
    state: TrainingState,
    record: dict[str, float],
    model: nn.Module,
    patience: int | None,
    shuffle: torch.Generator,
    log: Callable[[str], None],
) -> TrainingState:
    """The state after an epoch: its record added, early stopping updated, counters reset."""
    best_loss, best_weights, waited, finished = (
        state.best_loss,
        state.best_weights,
        state.waited,
        state.finished,
    )
    if patience is not None and "val_loss" in record:
        if record["val_loss"] < best_loss:
            best_loss, best_weights, waited = (
                record["val_loss"],
                copy.deepcopy(model.state_dict()),
                0,
            )
        else:
            waited += 1
            if waited >= patience:
                log(f"Early stopping: val_loss did not improve for {waited} epochs")
                finished = True
    return TrainingState(
        epoch=state.epoch + 1,
        shuffle_state=shuffle.get_state(),
        history=[*state.history, record],
        best_loss=best_loss,
        best_weights=best_weights,
        waited=waited,
        finished=finished,
        workers=state.workers,
        run=state.run,
    )


def _train_batches(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split | Shards,
    state: TrainingState,
    config: TrainConfig,
    shuffle: torch.Generator,
    between_steps: Callable[[float, bool | None], None],
    progress: bool,
    world: World,
    interrupted: Callable[[], bool],
    captured: CapturedStep | None = None,
) -> float:
    """Train the epoch ``state`` is in, from its step on, updating ``state``'s running sums
    (over all workers); ``between_steps(seconds so far, Ctrl-C agreed)`` runs before each step
    (it saves checkpoints, and raises when Ctrl-C asked to stop). ``captured``: the step in a
    CUDA graph, where ``CapturedStep.usable``. Returns the seconds spent."""
    from tqdm import tqdm

    for group in optimizer.param_groups:  # the epoch's rate, from its number: resumes alike
        group["lr"] = config.lr * config.lr_decay ** (state.epoch - 1)
    shuffle.set_state(state.shuffle_state)
    batches, batch = _epoch_batches(train, config, world, shuffle, device_of(model))
    options = StepOptions(config.clip_norm, config.tbptt)
    task = task_of(model)
    metric = metric_name(task)
    bar = tqdm(
        total=len(batches),
        initial=state.step,
        leave=False,
        dynamic_ncols=True,
        desc=f"Epoch {state.epoch}/{config.epochs}",
        disable=not progress,
    )
    started, stop = time.perf_counter(), None
    with bar:
        while state.step < len(batches):
            between_steps(time.perf_counter() - started, stop)
            x, y, counted = batch(state.step)
            weight = batch_weight(task, y) if counted else 0
            totals = _step(model, optimizer, x, y, options, world, weight, interrupted, captured)
            _count(state, totals)
            stop = bool(totals[4])  # Ctrl-C on any worker: all stop before the next step
            bar.update()
            if state.step % 10 == 0:
                bar.set_postfix(
                    loss=f"{state.loss_sum / state.seen:.4f}",
                    **{metric: f"{state.metric_sum / state.seen:.4f}"},
                )
    return time.perf_counter() - started


def _step(model, optimizer, x, y, options, world, weight, interrupted, captured) -> list:
    """One step of ``fit``'s loop: ``train_step``, or its recording in a CUDA graph
    (``captured``). Returns the totals [loss·weight, metric·weight, weight, not finite,
    Ctrl-C]."""
    if captured is None or not weight:
        return train_step(
            model, optimizer, x, y, options, weight=weight, world=world, stop=interrupted()
        )
    loss, metric = captured(x, y).tolist()
    return [loss * weight, metric * weight, weight, not math.isfinite(loss), interrupted()]


def _epoch_batches(
    train: Split | Shards,
    config: TrainConfig,
    world: World,
    shuffle: torch.Generator,
    device: torch.device,
) -> tuple[list, Callable[[int], tuple[torch.Tensor, torch.Tensor, bool]]]:
    """This worker's batches of the epoch (drawn from ``shuffle``) and ``batch(step)`` ->
    (x, y, whether its rows count) on ``device``. A split in memory is cut into global
    batches of ``batch_size · world.size`` rows, of which each worker takes its part
    (``World.shard``); ``Shards`` on disk are dealt out to the workers (``Shards.plan``)."""
    if isinstance(train, Shards):
        steps = train.plan(config.batch_size, config.bucket, world.rank, world.size, shuffle)

        def read(step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
            part, counted = train.batch(*steps[step])
            x, y = (tensor.to(device, non_blocking=True) for tensor in _tensors(part))
            return x, y, counted

        return steps, read
    x, y = (tensor.to(device) for tensor in _tensors(train))  # an accelerator holds it all
    # The global batches; each worker trains on its part (World.shard) of each.
    batches = batch_order(train.lengths, config.batch_size * world.size, config.bucket, shuffle)

    def take(step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        rows, counted = world.shard(batches[step].to(device))
        return x[rows], y[rows], counted

    return batches, take


def _count(state: TrainingState, totals: list[float]) -> None:
    """A step's (loss, metric, weight) totals into the epoch's running sums; the step done."""
    if totals[3] or not math.isfinite(totals[0]):  # (NaN times a weight of 0 is NaN too)
        raise NonFiniteLoss(totals[0] / max(totals[2], 1), state.epoch, state.step + 1)
    state.loss_sum += totals[0]
    state.metric_sum += totals[1]
    state.seen += totals[2]
    state.step += 1


class NonFiniteLoss(Exception):
    """A batch's loss became NaN or infinite (the weights were not updated with it)."""

    def __init__(self, loss: float, epoch: int, step: int) -> None:
        super().__init__(f"the loss became {loss} at epoch {epoch}, step {step}")


def _epoch_record(
    model: nn.Module,
    val: Split,
    state: TrainingState,
    seconds: float,
    config: TrainConfig,
    world: World | None = None,
) -> dict[str, float]:
    """The finished epoch's record: its training means, the validation scores, its time."""
    metric = metric_name(task_of(model))
    record = {
        "epoch": state.epoch,
        "loss": state.loss_sum / state.seen,
        metric: state.metric_sum / state.seen,
    }
    if len(val):  # none held out (val-size 0): nothing to score, nothing to stop early on
        val_metrics = evaluate(model, val, config.eval_batch_size, world=world)
        record.update(val_loss=val_metrics["loss"], **{f"val_{metric}": val_metrics[metric]})
    return {**record, "seconds": state.seconds + seconds}


def _epoch_line(record: dict[str, float], epochs: int) -> str:
    """Keras' epoch line: ``Epoch 1/3 - 2.9s - loss: ... - val_acc: ...``."""
    scores = " - ".join(f"{k}: {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
    return f"Epoch {record['epoch']}/{epochs} - {record['seconds']:.1f}s - {scores}"


CHECKPOINT_SECONDS = 60.0  # without checkpoint_every, a kill loses at most about this much


def _due(config: TrainConfig, saved: dict, step: int) -> bool:
    """Whether a mid-epoch checkpoint is due: ``checkpoint_every`` steps since the last one, or
    without it ``CHECKPOINT_SECONDS``."""
    if step == saved["step"]:
        return False
    if config.checkpoint_every:
        return step - saved["step"] >= config.checkpoint_every
    return time.perf_counter() - saved["time"] >= CHECKPOINT_SECONDS


def fit(
    model: nn.Module,
    train: Split | Shards,
    val: Split,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    progress: bool = True,
    checkpoint: Path | None = None,
    world: World | None = None,
    run: str = "",
) -> list[dict[str, float]]:
    """Train with ``config.optimizer`` on shuffled batches, validate after every epoch, stop
    early on ``val_loss`` and restore the best weights (an empty ``val``: all ``config.epochs``,
    the last weights). Returns one dict per epoch (the history).
    The model moves to ``config.device`` (and stays there); checkpoints load onto any device.
    With ``checkpoint``, the whole training state is saved there (atomically) after every epoch
    and when interrupted (Ctrl-C); if the file exists, training resumes from it exactly.
    With a ``world`` of workers (``elman.distributed``), each calls ``fit`` and trains on
    ``batch_size`` rows of every global batch (``batch_size · world.size``); rank 0 saves.
    ``run``: a digest of settings and data; a checkpoint of any other run is refused.
    A kind of cell trained in closed form (``CellKind.solve``: ``esn``) is solved instead."""
    if (solve := getattr(getattr(model, "cell", None), "solve", None)) is not None:
        return solve(model, train, val, config, log)
    return _descend(model, train, val, config, log, progress, checkpoint, world or World(), run)


def _descend(
    model: nn.Module,
    train: Split | Shards,
    val: Split,
    config: TrainConfig,
    log: Callable[[str], None],
    progress: bool,
    checkpoint: Path | None,
    world: World,
    run: str,
) -> list[dict[str, float]]:
    """``fit`` by gradient descent."""
    config = config.fitted_to(len(train), world.size, log)
    optimizer, shuffle, state = _start(model, train, config, checkpoint, world, log, run)
    network = world.wrap(model)  # what the steps call: DDP averages the gradients
    usable = CapturedStep.usable(model, optimizer, config, world)
    captured = CapturedStep(model, optimizer, config.clip_norm, log) if usable else None
    saving = checkpoint if world.main else None
    saved = {"step": state.step, "time": time.perf_counter()}
    with _deferred_interrupt() as interrupted:

        def between_steps(seconds: float = 0.0, stop: bool | None = None) -> None:
            """At a safe point: a checkpoint when one is due; on Ctrl-C (on any worker: they
            all stop at the same step; ``stop``: what the last step's sum said), save, stop."""
            if stop is None or not world.distributed:
                stop = bool(stop) or bool(world.total([float(interrupted())])[0])
            if stop:
                state.seconds += seconds
                _stop(saving, model, optimizer, state, log)
            if saving is not None and _due(config, saved, state.step):
                save_checkpoint(
                    saving, model, optimizer, replace(state, seconds=state.seconds + seconds)
                )
                saved.update(step=state.step, time=time.perf_counter())

        while state.epoch <= config.epochs and not state.finished:
            network.train()
            with _explained_non_finite(checkpoint):
                seconds = _train_batches(
                    network, optimizer, train, state, config, shuffle, between_steps, progress,
                    world, interrupted, captured,
                )  # fmt: skip
            record = _epoch_record(model, val, state, seconds, config, world)
            log(_epoch_line(record, config.epochs))
            state = _next_epoch(state, record, model, config.patience, shuffle, log)
            if saving is not None:
                save_checkpoint(saving, model, optimizer, state)
                saved.update(step=0, time=time.perf_counter())
            between_steps()
    _restore_best(model, state, log)
    return state.history


@contextlib.contextmanager
def _explained_non_finite(checkpoint: Path | None) -> Iterator[None]:
    """A loss that became NaN or infinite, as the one-line error that says what to do."""
    try:
        yield
    except NonFiniteLoss as error:
        kept = f" ({checkpoint} keeps the last good state)" if _exists(checkpoint) else ""
        raise UserError(f"{error}; training stopped{kept}: lower `lr` or set `clip_norm`") from None


def _exists(path: Path | None) -> bool:
    return path is not None and path.exists()


def _start(
    model: nn.Module,
    train: Split | Shards,
    config: TrainConfig,
    checkpoint: Path | None,
    world: World,
    log: Callable[[str], None],
    run: str = "",
) -> tuple[torch.optim.Optimizer, torch.Generator, TrainingState]:
    """The settings checked, the model on its device, the optimizer, the shuffling generator
    and the training state: fresh, or the checkpoint's."""
    if config.tbptt and not hasattr(model, "read_chunk"):
        raise UserError("`tbptt` reads numeric sequences in chunks: train series or speech")
    model.to(device_for(world, resolve_device(config.device)))
    optimizer = make_optimizer(model, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    state = TrainingState(shuffle_state=shuffle.get_state(), workers=world.size, run=run)
    if _exists(checkpoint):
        state = load_checkpoint(checkpoint, model, optimizer)
        if run and state.run and state.run != run:
            raise UserError(
                f"{checkpoint} was written by a run on other data or settings (the data changed "
                "since, or the file comes from another run): resume it with the same data, or "
                "start a new run with --overwrite"
            )
        if state.workers != world.size:
            raise UserError(
                f"{checkpoint} was trained by {state.workers} worker(s) and this run has "
                f"{world.size}: resume with --nproc-per-node {state.workers} (the global batch "
                "and the data order depend on it)"
            )
        log(f"Resuming from {checkpoint}: epoch {state.epoch}, step {state.step}")
    return optimizer, shuffle, state


def _restore_best(model: nn.Module, state: TrainingState, log: Callable[[str], None]) -> None:
    """Early stopping's end: the weights of the epoch with the best val_loss."""
    if state.best_weights is not None:
        best = min(state.history, key=lambda record: record["val_loss"])
        if best["epoch"] != state.history[-1]["epoch"]:
            log(
                f"Restoring the weights of epoch {best['epoch']} (best val_loss "
                f"{best['val_loss']:.4f})"
            )
        model.load_state_dict(state.best_weights)
