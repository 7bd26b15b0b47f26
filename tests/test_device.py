"""--device: the model and its batches go where training runs; what is saved does not care."""

from pathlib import Path

import pytest
import torch
from tests.conftest import save_small_model

from elman.bundle import load
from elman.config import TrainConfig
from elman.errors import UserError
from elman.models import ModelConfig, ReviewClassifier
from elman.train import device_of, evaluate, fit, resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device; use --device cpu or auto"):
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
