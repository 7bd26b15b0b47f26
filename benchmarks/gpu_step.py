"""Training step and batch inference of the IMDB model on a CUDA GPU: elman (cuDNN through
``backend="auto"``) against the same network in plain PyTorch (nn.Embedding + nn.RNN + nn.Linear).
Random token ids shaped like the real data (batch 32 for training, 1000 for inference, T=500).

    python benchmarks/gpu_step.py
"""

import time

import torch

from benchmarks.epoch import TorchRNNClassifier
from elman.models import ModelConfig, ReviewClassifier
from elman.train import RMSprop, bce_and_accuracy


def timed(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 10_000, (32, 500), generator=generator).to(device)
    labels = (torch.rand(32, generator=generator) > 0.5).float().to(device)
    test_ids = torch.randint(1, 10_000, (1000, 500), generator=generator).to(device)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, build in (
        ("elman (cuDNN)", lambda: ReviewClassifier(ModelConfig())),
        ("torch nn.RNN", TorchRNNClassifier),
    ):
        torch.manual_seed(0)
        model = build().to(device)
        optimizer = RMSprop(model.parameters())

        def step(model=model, optimizer=optimizer):
            loss, _ = bce_and_accuracy(model(ids), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def infer(model=model):
            with torch.no_grad():
                model(test_ids)

        step_seconds = timed(step, 50)
        infer_seconds = timed(infer, 10)
        print(
            f"{name}: {step_seconds * 1e3:.2f} ms/step ({step_seconds * 625:.1f} s/epoch), "
            f"{1000 / infer_seconds:,.0f} reviews/s inference"
        )


if __name__ == "__main__":
    main()
