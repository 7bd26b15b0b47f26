import io

import numpy as np
import pytest
import torch

from elman import train
from elman.errors import UserError
from elman.models import ModelConfig, ReviewClassifier
from elman.train import RMSprop, TrainConfig, fit


def test_rmsprop_follows_keras_formula():
    torch.manual_seed(0)
    weight = torch.randn(5, requires_grad=True)
    expected = weight.detach().clone()
    velocity = torch.zeros(5)
    optimizer = RMSprop([weight], lr=0.01, rho=0.9, epsilon=1e-7)
    for _ in range(4):
        optimizer.zero_grad()
        (weight**3).sum().backward()
        grad = 3 * expected**2
        velocity = 0.9 * velocity + 0.1 * grad**2
        expected = expected - 0.01 * grad / torch.sqrt(velocity + 1e-7)
        optimizer.step()
    torch.testing.assert_close(weight.detach(), expected)


def _train_small(small_real, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    fit(model, *small_real, TrainConfig(epochs=2, seed=seed), log=lambda _: None, progress=False)
    return model.state_dict()


def test_same_seed_same_weights(small_real):
    first, again = _train_small(small_real, 3), _train_small(small_real, 3)
    for name in first:
        assert torch.equal(first[name], again[name]), name
    other = _train_small(small_real, 4)
    assert not torch.equal(first["rnn.A"], other["rnn.A"])


def test_early_stopping_restores_best_weights(small_real, monkeypatch):
    scripted = iter([0.5, 0.4, 0.6, 0.7, 0.8])
    snapshots = []

    def fake_evaluate(model, split, batch_size, **_):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": next(scripted), "acc": 0.5}

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    logs = []
    history = fit(
        model, *small_real, TrainConfig(epochs=5, patience=1), log=logs.append, progress=False
    )
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert any("Early stopping" in line for line in logs)
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][name])  # epoch 2 had the best val_loss


def test_bad_training_settings(small_real):
    with pytest.raises(UserError, match="epochs"):
        TrainConfig(epochs=0)


def test_a_batch_larger_than_the_data_trains_on_all_of_it_with_a_note(small_real):
    """Small data trains: a batch larger than the training split is the split, one step an
    epoch, and the run says so; the same as asking for that batch."""
    train_split, val = small_real
    histories, logs = [], []
    for batch_size in (len(train_split) + 1, len(train_split)):
        torch.manual_seed(0)
        model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
        config = TrainConfig(epochs=1, batch_size=batch_size)
        histories.append(fit(model, train_split, val, config, log=logs.append, progress=False))
    note = "The batch size 641 is larger than the 640 training samples: batches of 640"
    assert logs.count(note) == 1
    assert [record["loss"] for record in histories[0]] == [r["loss"] for r in histories[1]]


def test_no_validation_trains_every_epoch_and_keeps_the_last_weights(small_real):
    """val-size 0 (Keras' validation_split=0): nothing held out, no early stopping, the
    last epoch's weights, records without val scores."""
    train, val = small_real
    empty = val.take(np.arange(0))

    def trained(epochs: int) -> tuple[list, dict]:
        torch.manual_seed(0)
        model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=6))
        config = TrainConfig(epochs=epochs, patience=0, lr=0.05)  # would stop after epoch 2
        history = fit(model, train, empty, config, log=lambda _: None, progress=False)
        return history, model.state_dict()

    history, weights = trained(4)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    assert all("val_loss" not in record and "loss" in record for record in history)
    _, three = trained(3)
    assert not torch.equal(weights["rnn.A"], three["rnn.A"])  # epoch 4's weights, kept


def test_val_size_zero_holds_nothing_out_and_test_size_zero_is_refused():
    from elman.data.split import split_rows

    kept, held = split_rows(10, 0, seed=0, what="val-size", least=0)
    assert sorted(kept) == list(range(10)) and len(held) == 0
    with pytest.raises(UserError, match="test-size must leave samples on both sides"):
        split_rows(10, 0, seed=0, what="test-size")


def test_threads_sets_torch_and_numba_alike(subset_archive, real_cache):
    """``--threads N`` in one process: torch and numba (the kernels' parallel loops) both run N
    threads, so a user capping the cores is not oversubscribed by the other."""
    import numba

    from elman.config import updated
    from elman.runs import preset
    from elman.workflow import train_model

    before = torch.get_num_threads(), numba.get_num_threads()
    config = updated(
        preset("imdb"),
        {
            "data": str(subset_archive),
            "cache_dir": str(real_cache),
            "max_len": 40,
            "vocab_size": 500,
            "hidden_size": 4,
            "val_size": 100,
            "epochs": 1,
            "threads": 1,
        },
    )
    try:
        train_model(config, log=lambda _: None, progress=False)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_the_step_in_a_graph_is_the_training_step_and_keeps_the_weights_on_a_bad_loss(
    small_real,
):
    """The step as a CUDA graph records it (``in_graph``: no value read back to Python)
    updates exactly as the eager step does, clipped or not, and a loss that is not finite
    leaves the weights."""
    train_split, _ = small_real
    x, y = torch.from_numpy(train_split.x), torch.from_numpy(train_split.y)
    for clip_norm in (None, 0.05):
        torch.manual_seed(0)
        model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
        twin = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
        twin.load_state_dict(model.state_dict())
        optimizer, twin_optimizer = RMSprop(model.parameters()), RMSprop(twin.parameters())
        eager, in_graph = train.StepOptions(clip_norm), train.StepOptions(clip_norm, in_graph=True)
        for start in range(0, 160, 32):
            batch = x[start : start + 32], y[start : start + 32]
            totals = train.train_step(model, optimizer, *batch, eager)
            twin_optimizer.zero_grad(set_to_none=True)
            outputs = train.train_step(twin, twin_optimizer, *batch, in_graph)
            assert [value * 32 for value in outputs.tolist()] == totals[:2]
            assert totals[2:] == [32, 0.0, 0.0]
        for a, b in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(a, b)
        before = [param.detach().clone() for param in twin.parameters()]
        twin_optimizer.zero_grad(set_to_none=True)
        nan_labels = torch.full_like(y[:32], float("nan"))
        outputs = train.train_step(twin, twin_optimizer, x[:32], nan_labels, in_graph)
        assert not torch.isfinite(outputs[0])
        for param, kept in zip(twin.parameters(), before, strict=True):
            assert torch.equal(param, kept)
        totals = train.train_step(model, optimizer, x[:32], nan_labels, eager)
        assert totals[3] == 1.0
        for param, kept in zip(model.parameters(), before, strict=True):
            assert torch.equal(param, kept)


def _mutated_checkpoint(saved: dict, rng: np.random.Generator) -> dict:
    """One seeded change of a checkpoint: a training-state field retyped or out of range, a
    weight or optimizer tensor reshaped, retyped or removed, the generator state cut."""
    odd = [None, -3, 0, 2.5, "x", [], {}, True, float("nan"), 10**9]
    kind = rng.integers(5)
    state, model, optimizer = saved["state"], saved["model"], saved["optimizer"]
    if kind == 0:
        state[str(rng.choice(sorted(state)))] = odd[rng.integers(len(odd))]
    elif kind == 1:
        name = str(rng.choice(sorted(model)))
        choice = rng.integers(3)
        if choice == 0:
            del model[name]
        else:
            model[name] = model[name].flatten()[:-1] if choice == 1 else model[name].double()
    elif kind == 2:
        entries = optimizer["state"][int(rng.choice(sorted(optimizer["state"])))]
        name = str(rng.choice(sorted(entries)))
        entries[name] = entries[name].flatten()[1:] if entries[name].dim() else torch.tensor([])
    elif kind == 3:
        state["shuffle_state"] = state["shuffle_state"][: rng.integers(1, 100)]
    else:
        state["history"] = [{"epoch": "one"}] if rng.random() < 0.5 else "none"
    return saved


def test_fuzzed_checkpoints_resume_or_are_refused_with_one_line(tmp_path):
    """40 seeded mutations of a real checkpoint: resuming from each either trains to its end
    or stops with a UserError before any step, never another exception."""
    generator = np.random.default_rng(0)
    ids = generator.integers(1, 50, (48, 10))
    labels = (generator.random(48) > 0.5).astype(np.float32)
    data = train.Split(ids, labels, np.full(48, 10))
    val = train.Split(ids[:8], labels[:8], np.full(8, 10))
    config = TrainConfig(epochs=2, batch_size=8, seed=0)

    def model() -> ReviewClassifier:
        torch.manual_seed(0)
        return ReviewClassifier(ModelConfig(vocab_size=50, max_len=10, hidden_size=4))

    checkpoint = tmp_path / "checkpoint.pt"
    fit(model(), data, val, train.replace(config, epochs=1), print, False, checkpoint)
    original = checkpoint.read_bytes()
    outcomes = {"refused": 0, "resumed": 0}
    for seed in range(40):
        saved = torch.load(io.BytesIO(original), weights_only=True)
        torch.save(_mutated_checkpoint(saved, np.random.default_rng(seed)), checkpoint)
        try:
            fit(model(), data, val, config, lambda _: None, False, checkpoint)
            outcomes["resumed"] += 1
        except UserError as error:
            assert "\n" not in str(error), error
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 25, outcomes


@pytest.mark.parametrize("clip_norm", [0.01, 1e6])
def test_the_step_clips_the_gradients_global_norm_as_torch_does(small_real, clip_norm):
    """``clip_norm``: the update is the one of gradients scaled by min(1, c / ‖g‖), ‖g‖ the
    norm of all gradients together (``torch.nn.utils.clip_grad_norm_``'s definition), here
    written out from the unclipped gradients of real reviews."""
    train_split, _ = small_real
    x, y = torch.from_numpy(train_split.x[:32]), torch.from_numpy(train_split.y[:32])
    torch.manual_seed(0)
    model = ReviewClassifier(ModelConfig(vocab_size=2000, max_len=40, hidden_size=8))
    before = [p.detach().clone() for p in model.parameters()]
    loss, _ = train.loss_and_metric("binary", model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.cat([g.flatten() for g in grads]).norm()
    scale = min(1.0, clip_norm / float(norm))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train.train_step(model, optimizer, x, y, train.StepOptions(clip_norm=clip_norm))
    for param, old, grad in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(param.detach(), old - grad * scale, rtol=1e-5, atol=1e-7)
