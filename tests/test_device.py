"""--device: the model and its batches go where training runs; what is saved does not care."""

from pathlib import Path

import pytest
import torch
from tests.conftest import save_small_model

from elman.config import TrainConfig
from elman.errors import UserError
from elman.inference import load
from elman.models import ModelConfig, ReviewClassifier
from elman.train import (
    CapturedStep,
    RMSprop,
    StepOptions,
    device_of,
    evaluate,
    fit,
    resolve_device,
    train_step,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device; use `device` cpu or auto"):
            resolve_device("cuda")


def test_fit_on_cpu_keeps_the_model_there_and_evaluates_it(small_real):
    train, val = small_real
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    fit(model, train, val, TrainConfig(epochs=1, device="cpu"), log=lambda _: None, progress=False)
    assert device_of(model).type == "cpu"
    assert 0.0 <= evaluate(model, val)["acc"] <= 1.0


@needs_cuda
def test_trained_on_gpu_resumes_and_predicts_on_cpu(small_real, tmp_path: Path):
    train, val = small_real
    config = TrainConfig(epochs=2, device="cuda", patience=None)
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(model, train, val, config, log=lambda _: None, progress=False, checkpoint=checkpoint)
    assert device_of(model).type == "cuda"
    on_gpu = evaluate(model, val)
    # the checkpoint (written on the GPU) loads on the CPU: a finished run stays finished
    torch.manual_seed(0)
    again = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    cpu = TrainConfig(epochs=2, device="cpu", patience=None)
    fit(again, train, val, cpu, log=lambda _: None, progress=False, checkpoint=checkpoint)
    on_cpu = evaluate(again, val)
    assert on_cpu["acc"] == pytest.approx(on_gpu["acc"], abs=0.01)
    assert on_cpu["loss"] == pytest.approx(on_gpu["loss"], rel=1e-3)


@needs_cuda
def test_a_saved_folder_predicts_alike_on_both_devices(tmp_path: Path):
    save_small_model(tmp_path / "model")
    texts = ["the film was great", "boring acting and a bad story"]
    cpu = load(tmp_path / "model").predict(texts)
    trained = load(tmp_path / "model")
    trained.model.to("cuda")
    gpu = trained.predict(texts)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.label == b.label and a.probability == pytest.approx(b.probability, abs=1e-5)


def _twins(seed: int = 0) -> tuple[ReviewClassifier, ReviewClassifier]:
    torch.manual_seed(seed)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8)).cuda()
    twin = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8)).cuda()
    twin.load_state_dict(model.state_dict())
    return model, twin


@needs_cuda
def test_captured_step_trains_as_the_eager_step(small_real):
    """Warm-up, recording, replays, a short batch stepped eagerly in between, a new learning
    rate recorded again, and a bad loss that keeps the weights: all as eager steps do."""
    train_split, _ = small_real
    x, y = torch.from_numpy(train_split.x).cuda(), torch.from_numpy(train_split.y).cuda()
    model, twin = _twins()
    optimizer, twin_optimizer = RMSprop(model.parameters()), RMSprop(twin.parameters())
    logged: list[str] = []
    captured = CapturedStep(model, optimizer, 0.5, logged.append)
    batches = [(start, 32) for start in range(0, 320, 32)] + [(320, 20), (352, 32), (384, 32)]
    for step, (start, size) in enumerate(batches):
        if step == 11:  # as a new epoch's learning rate would
            for group in (*optimizer.param_groups, *twin_optimizer.param_groups):
                group["lr"] = 5e-4
        batch = x[start : start + size], y[start : start + size]
        outputs = captured(*batch)
        twin_optimizer.zero_grad(set_to_none=True)
        expected = train_step(twin, twin_optimizer, *batch, StepOptions(0.5, in_graph=True))
        torch.testing.assert_close(outputs, expected, rtol=1e-5, atol=1e-6)
    assert captured.graph is not None and not logged
    assert captured.key[-1] == (5e-4,)  # recorded again for the new rate
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    before = [param.detach().clone() for param in model.parameters()]
    outputs = captured(x[:32], torch.full_like(y[:32], float("nan")))  # a replay
    assert not torch.isfinite(outputs[0])
    for param, kept in zip(model.parameters(), before, strict=True):
        assert torch.equal(param, kept)


@needs_cuda
def test_fit_with_and_without_the_cuda_graph_agree(small_real):
    train_split, val = small_real
    histories, models = [], _twins()
    for model, cuda_graph in zip(models, ("auto", "off"), strict=True):
        config = TrainConfig(epochs=2, device="cuda", lr_decay=0.5, cuda_graph=cuda_graph)
        logged: list[str] = []
        histories.append(fit(model, train_split, val, config, log=logged.append, progress=False))
        assert not any("capture failed" in line for line in logged)
    for captured, eager in zip(*histories, strict=True):
        assert captured["loss"] == pytest.approx(eager["loss"], rel=1e-4)
        assert captured["val_acc"] == pytest.approx(eager["val_acc"], abs=0.01)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
