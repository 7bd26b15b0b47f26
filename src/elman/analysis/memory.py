"""Short- versus long-term memory, measured on a task that needs exactly one of them.

The recall task: a sequence starts with one of ``symbols`` target tokens, then ``lag`` random
distractor tokens (from a separate set) follow; the answer is the first token. Chance is
1/symbols. Each recurrent layer (the simple RNN, an LSTM, a GRU, all of width ``hidden_size``) is
trained from scratch for each lag with the same budget, and tested on fresh sequences. A simple
RNN solves short lags and fails long ones; the table says where.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import elman.cells as cells
from elman.config import SequenceConfig
from elman.settings import setting
from elman.train import RMSprop, StepOptions, train_step

LAYERS = cells.names(texts=False)  # the kinds that read any sequence (rnn, lstm, gru)


@dataclass
class MemoryConfig:
    lags: tuple[int, ...] = setting((5, 10, 20, 50, 100), "distractors between symbol and recall")
    layers: tuple[str, ...] = setting(LAYERS, "recurrent layers to compare")
    symbols: int = setting(8, "distinct symbols to recall (chance: 1/symbols)")
    hidden_size: int = setting(32, "state size of every layer")
    embedding_dim: int = setting(16, "embedding size of the symbols")
    steps: int = setting(3000, "training steps per layer and lag")
    batch_size: int = setting(64, "sequences per step")
    lr: float = setting(3e-3, "RMSprop learning rate (gradient norm clipped at 1)")
    test_size: int = setting(2000, "fresh sequences each is tested on")
    seed: int = setting(0, "seed of data and initialisation")


def recall_batch(batch: int, lag: int, symbols: int, generator: torch.Generator):
    """Token ids (batch, lag + 1): target first, then distractors; and the targets (batch,)."""
    targets = torch.randint(0, symbols, (batch,), generator=generator)
    distractors = torch.randint(symbols, 2 * symbols, (batch, lag), generator=generator)
    return torch.cat([targets[:, None], distractors], dim=1), targets


class RecallModel(nn.Module):
    """Embedding -> recurrent layer (last state) -> Linear(symbols): logits (B, symbols)."""

    task = "multiclass"  # (for elman.train: cross-entropy and accuracy)

    def __init__(self, layer: str, config: MemoryConfig) -> None:
        super().__init__()
        E, H = config.embedding_dim, config.hidden_size
        self.embedding = nn.Embedding(2 * config.symbols, E)
        settings = SequenceConfig(architecture=layer, input_size=E, hidden_size=H)
        self.rnn = cells.kind_of(layer, texts=False).build(settings, E, False)
        self.head = nn.Linear(H, config.symbols)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embedding(ids)
        return self.head(self.rnn(x))


def train_recall(layer: str, lag: int, config: MemoryConfig) -> float:
    """Test accuracy of ``layer`` trained on the recall task at ``lag``."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + lag)
    model = RecallModel(layer, config)
    optimizer = RMSprop(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.steps):  # a fresh batch every step: the task has endless data
        ids, targets = recall_batch(config.batch_size, lag, config.symbols, generator)
        clipped = StepOptions(clip_norm=1.0)  # long lags explode unclipped
        train_step(model, optimizer, ids, targets, clipped)
    ids, targets = recall_batch(config.test_size, lag, config.symbols, generator)
    with torch.no_grad():
        return float((model(ids).argmax(1) == targets).float().mean())


def memory_table(
    config: MemoryConfig, log: Callable[[str], None] = print
) -> dict[str, dict[int, float]]:
    """Accuracy of each layer at each lag: {layer: {lag: accuracy}}."""
    table: dict[str, dict[int, float]] = {layer: {} for layer in config.layers}
    for lag in config.lags:
        for layer in config.layers:
            started = time.perf_counter()
            table[layer][lag] = train_recall(layer, lag, config)
            log(
                f"lag {lag:>4}  {layer:<5} accuracy {table[layer][lag]:.3f} "
                f"({time.perf_counter() - started:.1f}s)"
            )
    return table


def format_table(table: dict[str, dict[int, float]], symbols: int) -> str:
    """A Markdown table, lags down, layers across."""
    layers = list(table)
    lags = sorted({lag for row in table.values() for lag in row})
    lines = ["| lag | " + " | ".join(layers) + " |", "|---:|" + "---:|" * len(layers)]
    for lag in lags:
        lines.append(f"| {lag} | " + " | ".join(f"{table[l][lag]:.3f}" for l in layers) + " |")
    lines.append(f"\nChance: {1 / symbols:.3f}.")
    return "\n".join(lines)


def plot_memory(table: dict[str, dict[int, float]], symbols: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for layer, row in table.items():
        lags = sorted(row)
        axis.plot(lags, [row[lag] for lag in lags], marker="o", label=layer)
    axis.axhline(1 / symbols, color="grey", ls="--", lw=0.8, label="chance")
    axis.set(
        xscale="log",
        xlabel="lag (distractors between the symbol and the question)",
        ylabel="test accuracy",
        ylim=(0, 1.02),
        title="Recall the first symbol after L steps",
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def analyze_memory(config: MemoryConfig, out_dir: Path, log: Callable[[str], None] = print):
    """Run ``memory_table`` and write memory.json, memory.md and memory.png into ``out_dir``."""
    from dataclasses import asdict

    from elman.files import atomic_write, json_bytes

    table = memory_table(config, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out_dir / "memory.json",
        json_bytes(
            {
                "config": asdict(config),
                "accuracy": {
                    layer: {str(lag): accuracy for lag, accuracy in row.items()}
                    for layer, row in table.items()
                },
            }
        ),
    )
    atomic_write(out_dir / "memory.md", (format_table(table, config.symbols) + "\n").encode())
    plot_memory(table, config.symbols, str(out_dir / "memory.png"))
    return table
