"""How far back can a simple RNN remember? The field's standard long-memory tasks, measured.

The tasks (generated from a seed, nothing to download):

- ``adding`` (Hochreiter & Schmidhuber 1997, as in Le et al. 2015): T steps of two channels, a
  value uniform in [0, 1] and a marker that is 1 at two steps, one in each half of the sequence;
  the target is the sum of the two marked values. Always answering 1 scores MSE 1/6 = 0.167
  (the sum's variance); solved: MSE ≤ ``solved_mse``.
- ``copy`` (as in Arjovsky et al. 2016): 10 symbols out of 8, T - 1 blanks, a delimiter, then
  10 blanks during which the 10 symbols must be written back, in order; every other step's
  answer is the blank. A model that writes blanks and then guesses scores cross-entropy
  10·ln 8 / (T + 20) and recall accuracy 1/8; solved: recall accuracy ≥ ``solved_accuracy``.
- ``digits``: scikit-learn's bundled 8×8 handwritten digits read one pixel per step (T = 64),
  a sequential classification (the small cousin of pixel-by-pixel MNIST); split 60/20/20 into
  training, validation and test by the seed; solved: validation accuracy ≥ ``solved_accuracy``.

The protocol: each variant (``VARIANTS``: the simple RNN, the remedies, the gated references)
trains on each task from the shortest T up, with the same budget (at most ``steps`` updates and
``seconds`` of training on this machine; Adam, gradient norm clipped at ``clip_norm``), a fresh
batch each update, checked on a fixed validation set every ``check_every`` updates and stopped
when solved there (that check decides "solved"). A variant that fails at T is not run at longer
T (it would fail there too, and the budget goes to the ones that can). The test metric is
measured on fresh sequences (the digits' test split) after training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import elman.cells as cells
from elman.cells import gated
from elman.config import SequenceConfig
from elman.errors import UserError, require_positive
from elman.settings import choose, setting
from elman.train import StepOptions, train_step

# variant -> (cell kind, activation, init of the simple RNN's A, layers)
VARIANTS: dict[str, tuple[str, str, str, int]] = {
    "rnn": ("rnn", "tanh", "keras", 1),  # the seed's cell, Keras' initialisation
    "rnn-relu": ("rnn", "relu", "keras", 1),
    "irnn": ("rnn", "relu", "identity", 1),  # Le et al. 2015
    "indrnn": ("indrnn", "relu", "keras", 2),  # Li et al. 2018: u uniform in [0, 1], stacked
    **{kind.name: (kind.name, "tanh", "keras", 1) for kind in (gated.LSTM, gated.GRU)},
}
TASKS = ("adding", "copy", "digits")
SYMBOLS, REMEMBER = 8, 10  # the copy task's alphabet and how many symbols it copies
BLANK, DELIMITER = 0, SYMBOLS + 1  # its input codes (symbols are 1..8)


@dataclass
class TasksConfig:
    tasks: tuple[str, ...] = setting(TASKS, "tasks to run (adding, copy, digits)")
    lengths: tuple[int, ...] = setting((50, 100, 200, 400, 1000), "T of the adding problem")
    copy_lengths: tuple[int, ...] = setting((10, 20, 50, 100, 200), "T of the copy task")
    variants: tuple[str, ...] = setting(
        ("rnn", "irnn", "indrnn", gated.LSTM.name, gated.GRU.name),
        f"cells to compare ({', '.join(VARIANTS)})",
    )
    hidden_size: int = setting(64, "state size of every cell")
    steps: int = setting(20000, "budget: at most this many updates per task, length and variant")
    seconds: float = setting(60.0, "budget: and at most this many seconds of training")
    batch_size: int = setting(32, "sequences per update")
    lr: float = setting(1e-3, "Adam's learning rate")
    clip_norm: float = setting(1.0, "gradient norm clipped to this before each update")
    check_every: int = setting(50, "updates between checks on the validation set")
    eval_size: int = setting(500, "sequences in the validation set and in the test set")
    solved_mse: float = setting(0.01, "adding: solved at this test MSE or below")
    solved_accuracy: float = setting(0.9, "copy and digits: solved at this accuracy")
    seed: int = setting(0, "seed of data and initialisation")
    threads: int = setting(1, "PyTorch's CPU threads (these small cells run fastest on one)")

    def __post_init__(self) -> None:
        for name, allowed in (("tasks", TASKS), ("variants", tuple(VARIANTS))):
            for value in getattr(self, name):
                choose(value, allowed, name)
        require_positive(self, "hidden_size", "steps", "seconds", "batch_size", "check_every")
        require_positive(self, "eval_size", "lr", "threads")
        if min((*self.lengths, *self.copy_lengths)) < 2:
            raise UserError("`lengths` and `copy_lengths` must be 2 steps or more")


# ---- the tasks' data: (x (B, T, F) float, y) ----


def adding_batch(batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (B, T, 2): values uniform in [0, 1] and the two markers; y (B, 1): the marked sum."""
    values = torch.rand(batch, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], -1), target[:, None]


def copy_batch(batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (B, T + 20, 10) one-hot inputs; y (B, T + 20) the answer at every step (0: blank)."""
    symbols = torch.randint(1, SYMBOLS + 1, (batch, REMEMBER), generator=generator)
    codes = torch.full((batch, length + 2 * REMEMBER), BLANK)
    codes[:, :REMEMBER] = symbols
    codes[:, length + REMEMBER - 1] = DELIMITER
    answers = torch.full_like(codes, BLANK)
    answers[:, -REMEMBER:] = symbols
    return nn.functional.one_hot(codes, SYMBOLS + 2).float(), answers


def copy_baseline(length: int) -> float:
    """Cross-entropy of blanks, then a uniform guess among the symbols."""
    return REMEMBER * math.log(SYMBOLS) / (length + 2 * REMEMBER)


def digits_splits(seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """scikit-learn's 1,797 digits as (x (N, 64, 1) in [0, 1], y (N,)), split 60/20/20."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32)[..., None] / 16.0
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = [0, int(0.6 * len(x)), int(0.8 * len(x)), len(x)]
    names = ("train", "val", "test")
    y, bounds = torch.tensor(labels), zip(names, cut[:-1], cut[1:], strict=True)
    return {name: (x[order[a:b]], y[order[a:b]]) for name, a, b in bounds}


# ---- the model ----


class TaskModel(nn.Module):
    """A cell (``VARIANTS``) -> Linear: the adding task's sum (B, 1), the copy task's answer
    logits at every step (B, T, 9), the digits' class logits (B, 10)."""

    def __init__(self, variant: str, task: str, config: TasksConfig) -> None:
        super().__init__()
        kind, activation, init, layers = VARIANTS[variant]
        inputs, outputs = {"adding": (2, 1), "copy": (SYMBOLS + 2, SYMBOLS + 1)}.get(task, (1, 10))
        settings = SequenceConfig(
            architecture=kind,
            input_size=inputs,
            hidden_size=config.hidden_size,
            activation=activation,
            init=init,
            layers=layers,
        )
        self.every_step = task == "copy"
        self.rnn = cells.kind_of(kind, texts=False).build(settings, inputs, self.every_step)
        self.head = nn.Linear(config.hidden_size, outputs)
        self.task = "forecast" if task == "adding" else "multiclass"  # (elman.train: MSE, CE)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x))


@dataclass
class Outcome:
    """One training run: the test metric, whether it solved the task (its validation check
    passed within the budget), the updates and seconds it took."""

    metric: float
    solved: bool
    steps: int
    seconds: float


def _measure(model: TaskModel, task: str, x: Tensor, y: Tensor) -> float:
    """The task's metric: MSE (adding), accuracy on the recalled symbols (copy), accuracy."""
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train()
    if task == "adding":
        return float(((out - y) ** 2).mean())
    if task == "copy":
        out, y = out[:, -REMEMBER:], y[:, -REMEMBER:]
    return float((out.argmax(-1) == y).float().mean())


def _data(task: str, length: int, config: TasksConfig) -> tuple[Callable, tuple, tuple]:
    """(batch(generator) -> a training batch, the validation set, the test set)."""
    if task == "digits":
        splits = digits_splits(config.seed)
        x, y = splits["train"]

        def batch(generator: torch.Generator) -> tuple[Tensor, Tensor]:
            rows = torch.randint(0, len(x), (config.batch_size,), generator=generator)
            return x[rows], y[rows]

        return batch, splits["val"], splits["test"]
    make = adding_batch if task == "adding" else copy_batch
    fixed = [
        make(config.eval_size, length, torch.Generator().manual_seed(config.seed + k))
        for k in (1, 2)
    ]
    return (lambda generator: make(config.batch_size, length, generator)), fixed[0], fixed[1]


def solved(task: str, metric: float, config: TasksConfig) -> bool:
    if task == "adding":
        return metric <= config.solved_mse
    return metric >= config.solved_accuracy


def train_task(
    variant: str, task: str, length: int, config: TasksConfig
) -> tuple[Outcome, TaskModel]:
    """Train ``variant`` on ``task`` at ``length`` within the budget (see the module docstring)."""
    torch.manual_seed(config.seed)
    model = TaskModel(variant, task, config)
    batch, validation, test = _data(task, length, config)
    generator = torch.Generator().manual_seed(config.seed + 1000 + length)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    options = StepOptions(clip_norm=config.clip_norm)
    started, steps, passed = time.perf_counter(), 0, False
    while steps < config.steps and time.perf_counter() - started < config.seconds:
        train_step(model, optimizer, *batch(generator), options)
        steps += 1
        if steps % config.check_every == 0:
            passed = solved(task, _measure(model, task, *validation), config)
            if passed:
                break
    seconds = time.perf_counter() - started
    metric = _measure(model, task, *test)
    return Outcome(metric, passed, steps, seconds), model


# ---- the comparison ----


def lengths_of(task: str, config: TasksConfig) -> tuple[int, ...]:
    return {"adding": config.lengths, "copy": config.copy_lengths}.get(task, (64,))


def gradient_norms(model: TaskModel, x: Tensor) -> Tensor:
    """‖∂h_T/∂x_t‖ for t = 1..T (T,), the Frobenius norm of each (H × F) Jacobian block of the
    final state h_T with respect to step t's input, for one sequence x (T, F). One backward
    pass: the sequence is copied once per state unit, and row i's loss is its unit i."""
    H = model.head.in_features
    copies = x[None].expand(H, -1, -1).clone().requires_grad_()
    states = model.rnn(copies)
    final = states[:, -1] if states.dim() == 3 else states  # (H, H)
    (grad,) = torch.autograd.grad(final.diagonal().sum(), copies)
    return grad.double().pow(2).sum((0, 2)).sqrt()


def compare(config: TasksConfig, log: Callable[[str], None] = print) -> dict:
    """Every task × length × variant (the protocol of the module docstring): {"runs": [...],
    "gradients": {variant: {"init": [...], "trained": [...]}, "T": T}}, the gradient norms of
    each variant on one adding sequence of the longest ``lengths``, at initialisation and after
    its last adding run's training."""
    runs, trained = [], {}
    for task in config.tasks:
        for variant in config.variants:
            for length in lengths_of(task, config):
                outcome, model = train_task(variant, task, length, config)
                runs.append({"task": task, "T": length, "variant": variant, **vars(outcome)})
                log(
                    f"{task:<6} T={length:<5} {variant:<7} {_shown(task, outcome.metric)} "
                    f"{'solved' if outcome.solved else 'not solved'} in {outcome.steps} steps, "
                    f"{outcome.seconds:.0f} s"
                )
                trained.update({variant: model} if task == "adding" else {})
                if not outcome.solved:
                    break  # (longer T would fail too: the protocol)
    length = max(config.lengths)
    x = adding_batch(1, length, torch.Generator().manual_seed(config.seed))[0][0]
    gradients: dict = {"T": length}
    for variant, model in trained.items():
        torch.manual_seed(config.seed)  # (the same draw as its training run's start)
        fresh = TaskModel(variant, "adding", config)
        gradients[variant] = {
            "init": gradient_norms(fresh, x).tolist(),
            "trained": gradient_norms(model, x).tolist(),
        }
    return {"runs": runs, "gradients": gradients}


def _shown(task: str, metric: float) -> str:
    return f"MSE {metric:.4f}" if task == "adding" else f"acc {metric:.3f}"


def baseline(task: str, length: int) -> str:
    """What a model that learnt nothing scores."""
    if task == "adding":
        return "MSE 0.167"
    if task == "copy":
        return f"acc {1 / SYMBOLS:.3f} (CE {copy_baseline(length):.3f})"
    return "acc 0.100"


def format_tables(result: dict, config: TasksConfig) -> str:
    """Markdown: the longest T each variant solved, then every run."""
    runs, variants = result["runs"], list(config.variants)
    lines = ["| task | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
    for task in config.tasks:
        row = []
        for variant in variants:
            ran = [r for r in runs if r["task"] == task and r["variant"] == variant]
            solved_at = [r["T"] for r in ran if r["solved"]]
            row.append(str(max(solved_at)) if solved_at else f"< {min(r['T'] for r in ran)}")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    lines += ["", _gradient_table(result["gradients"]), "", "Every run:", ""]
    lines += [
        "| task | T | variant | test metric | learnt nothing | solved | updates | seconds |",
        "|---|---:|---|---:|---|---|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['task']} | {r['T']} | {r['variant']} | {_shown(r['task'], r['metric'])} | "
            f"{baseline(r['task'], r['T'])} | {'yes' if r['solved'] else 'no'} | {r['steps']} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _gradient_table(gradients: dict) -> str:
    """‖∂h_T/∂x_t‖ at a few distances T - t, at initialisation and after training."""
    T = gradients["T"]
    back = [b for b in (1, 10, 100, T - 1) if b < T]
    heads = " | ".join(f"T - t = {b}" for b in back)
    lines = [
        f"‖∂h_T/∂x_t‖ on one adding sequence of T = {T} (init → after training on adding):",
        "",
        f"| variant | {heads} |",
        "|---|" + "---:|" * len(back),
    ]
    for variant, norms in gradients.items():
        if variant == "T":
            continue
        cells_ = [
            f"{norms['init'][T - 1 - b]:.1e} → {norms['trained'][T - 1 - b]:.1e}" for b in back
        ]
        lines.append(f"| {variant} | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def plot_tasks(result: dict, config: TasksConfig, path: str) -> None:
    """Adding MSE and copy recall against T, per variant; the gradient norms beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    colours = {v: f"C{i}" for i, v in enumerate(config.variants)}
    for axis, task, floor in ((axes[0], "adding", 1 / 6), (axes[1], "copy", 1 / SYMBOLS)):
        for variant in config.variants:
            ran = [r for r in result["runs"] if r["task"] == task and r["variant"] == variant]
            axis.plot(
                [r["T"] for r in ran],
                [r["metric"] for r in ran],
                marker="o",
                color=colours[variant],
                label=variant,
            )
        axis.axhline(floor, color="grey", ls="--", lw=0.8, label="learnt nothing")
        axis.set(xscale="log", xlabel="T (steps between what matters and the answer)")
        axis.grid(alpha=0.3, which="both")
    axes[0].set(yscale="log", ylabel="test MSE (lower is better)", title="Adding problem")
    axes[1].set(ylabel="recall accuracy", ylim=(0, 1.02), title="Copy task")
    axes[0].legend()
    gradients = result["gradients"]
    for variant in config.variants:
        if variant not in gradients:
            continue
        for stage, style in (("init", ":"), ("trained", "-")):
            norms = gradients[variant][stage]
            back = range(len(norms) - 1, -1, -1)  # steps before the end
            axes[2].plot(back, norms, ls=style, color=colours[variant], lw=1)
    axes[2].plot([], [], "k:", label="at initialisation")
    axes[2].plot([], [], "k-", label="after training on adding")
    axes[2].set(
        xscale="symlog",
        yscale="log",
        xlabel="steps before the end, T - t",
        ylabel="‖∂h_T/∂x_t‖",
        title=f"How much input t still moves h_T (T = {gradients['T']})",
    )
    axes[2].grid(alpha=0.3, which="both")
    axes[2].legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def analyze_tasks(config: TasksConfig, out_dir, log: Callable[[str], None] = print) -> dict:
    """Run ``compare`` and write tasks.json, tasks.md and tasks.png into ``out_dir``."""
    from dataclasses import asdict

    from elman.distributed import World, share_cores
    from elman.files import atomic_write, json_bytes

    share_cores(World(), config.threads)  # torch's and numba's
    result = compare(config, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "tasks.json", json_bytes({"config": asdict(config), **result}))
    atomic_write(out_dir / "tasks.md", (format_tables(result, config) + "\n").encode())
    plot_tasks(result, config, str(out_dir / "tasks.png"))
    return result
