"""Training step and batch inference of the IMDB model on a CUDA GPU: elman (cuDNN through
``backend="auto"``) against the same network in plain PyTorch (nn.Embedding + nn.RNN + nn.Linear),
each eager and with the whole training step captured in a CUDA graph. Random token ids shaped
like the real data (batch 32 for training, 1000 for inference, T=500).

    python benchmarks/gpu_step.py

The step is launch-bound (dozens of small kernels), so the captured step (forward, loss,
backward and RMSprop recorded once, then replayed after copying each batch into the graph's
input buffers; PyTorch's "whole network capture") is what a training loop with static shapes can
reach: ``elman.train.CapturedStep``, the step ``fit`` runs on CUDA. Each captured model is
also checked against eager steps from the same weights: the printed difference is the largest
weight difference after 23 steps of each.
"""

import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from elman.models import ModelConfig, ReviewClassifier
from elman.train import CapturedStep, RMSprop, bce_and_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.epoch import TorchRNNClassifier  # noqa: E402
from benchmarks.report import provenance  # noqa: E402

Step = Callable[[torch.Tensor, torch.Tensor], None]


def timed(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def eager_step(model: nn.Module, optimizer: RMSprop) -> Step:
    def step(ids: torch.Tensor, labels: torch.Tensor) -> None:
        loss, _ = bce_and_accuracy(model(ids), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def captured_step(model: nn.Module, optimizer: RMSprop) -> Step:
    """The step as ``fit`` runs it on CUDA (``elman.train.CapturedStep``): three eager warm-up
    steps, then recorded once in a CUDA graph and replayed for each batch, copied in."""
    captured = CapturedStep(model, optimizer, None, print)

    def step(ids: torch.Tensor, labels: torch.Tensor) -> None:
        captured(ids, labels)

    return step


def largest_difference(model: nn.Module, batches: list) -> float:
    """Largest weight difference between copies of ``model`` trained eagerly and captured, on the
    same batches."""
    twins = [copy.deepcopy(model), copy.deepcopy(model)]
    for twin in twins:  # a deep copy leaves nn.RNN's weights apart; cuDNN wants them in one block
        for module in twin.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()
    run_eager = eager_step(twins[0], RMSprop(twins[0].parameters()))
    run_captured = captured_step(twins[1], RMSprop(twins[1].parameters()))
    for ids, labels in batches:
        run_eager(ids, labels)
        run_captured(ids, labels)
    torch.cuda.synchronize()
    return max(
        float((a - b).detach().abs().max())
        for a, b in zip(twins[0].parameters(), twins[1].parameters(), strict=True)
    )


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_step.py needs a CUDA device; this machine has none")
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 10_000, (32, 500), generator=generator).to(device)
    labels = (torch.rand(32, generator=generator) > 0.5).float().to(device)
    test_ids = torch.randint(1, 10_000, (1000, 500), generator=generator).to(device)
    same = [(ids, labels)] * 23  # three warm-up steps, then 20 recorded ones
    print(provenance() + "\n")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    results = {}
    for name, build in (
        ("elman (cuDNN)", lambda: ReviewClassifier(ModelConfig())),
        ("torch nn.RNN", TorchRNNClassifier),
    ):
        torch.manual_seed(0)
        model = build().to(device)
        difference = largest_difference(model, same)
        eager = eager_step(model, RMSprop(model.parameters()))
        eager_seconds = timed(lambda eager=eager: eager(ids, labels), 50)
        replay = captured_step(model, RMSprop(model.parameters()))
        captured_seconds = timed(lambda replay=replay: replay(ids, labels), 50)

        def infer(model=model):
            with torch.no_grad():
                model(test_ids)

        infer_seconds = timed(infer, 10)
        results[name] = (eager_seconds, captured_seconds)
        print(
            f"{name}: eager {eager_seconds * 1e3:.2f} ms/step ({eager_seconds * 625:.1f} s/epoch), "
            f"captured {captured_seconds * 1e3:.2f} ms/step ({captured_seconds * 625:.2f} s/epoch;"
            f" weights after 20 steps within {difference:.1e} of eager), "
            f"{1000 / infer_seconds:,.0f} reviews/s inference"
        )
    baseline = results["torch nn.RNN"][0]
    for name, (eager_seconds, captured_seconds) in results.items():
        print(
            f"{name} vs eager nn.RNN: eager {baseline / eager_seconds:.2f}x, "
            f"captured {baseline / captured_seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
