"""The reference run on the real reviews: 3 epochs of the 322,113-parameter model."""

import json
import subprocess
import sys

from elman.train import imdb_preset, train_imdb


def test_reference_model_reaches_080_on_real_test_reviews(real_archive, real_cache, tmp_path):
    config = imdb_preset("rnn")
    config.data.data = str(real_archive)
    config.data.cache_dir = str(real_cache)
    lines = []
    metrics = train_imdb(config, out_dir=tmp_path / "run", log=lines.append, progress=False)
    assert "Total params: 322,113" in "\n".join(lines)
    assert metrics["test_acc"] >= 0.80, metrics
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 3 and history[0]["val_acc"] > 0.7

    # The saved run, re-evaluated by the CLI, gives the same test accuracy.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "elman.cli",
            "evaluate",
            "--model",
            str(tmp_path / "run"),
            "--cache-dir",
            str(real_cache),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert f"acc {metrics['test_acc']:.4f}" in result.stdout
