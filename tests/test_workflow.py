"""The run's workflow: what a first run compiles ahead, in other processes."""

import os
from pathlib import Path

from elman.workflow import compiled_on_disk


def test_kernels_count_as_compiled_only_after_their_module_last_changed(tmp_path: Path):
    source = tmp_path / "ids.py"
    source.write_text("# kernels\n")
    assert not compiled_on_disk(source)  # never compiled: a first run compiles ahead
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    index = cache / "ids._read_rows-53.py311.nbi"
    index.write_bytes(b"")
    os.utime(source, (1_000, 1_000))
    os.utime(index, (2_000, 2_000))
    assert compiled_on_disk(source)
    os.utime(source, (3_000, 3_000))  # edited or upgraded since: numba compiles it again
    assert not compiled_on_disk(source)
    (cache / "other._loop-1.py311.nbi").write_bytes(b"")  # another module's index: not ids'
    assert not compiled_on_disk(source)


def test_the_compile_process_leaves_a_training_step_and_a_prediction_nothing_to_compile(
    tmp_path: Path,
):
    """``warm_kernels`` (what ``compile_ahead``'s process runs), then, in another process with
    the same numba cache, a model built like the run's but of other sizes trains a step and
    predicts: every compiled kernel it calls comes from disk."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    from elman.workflow import imdb_preset

    settings = json.dumps(asdict(imdb_preset().model))
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    warm = "import sys; from elman.workflow import warm_kernels; warm_kernels(sys.argv[1])"
    subprocess.run([sys.executable, "-c", warm, settings], env=environment, check=True)
    step = """
import json, sys, torch
from elman.config import ModelConfig
from elman.kernels import ids, loops
from elman.models import ReviewClassifier
settings = {**json.loads(sys.argv[1]), "vocab_size": 300, "max_len": 50}
model = ReviewClassifier(ModelConfig(**settings))
batch = torch.randint(3, 300, (32, 50))
batch[:5, :20] = 0
model.train()(batch).sum().backward()
with torch.no_grad():
    model.eval()(batch)
loops_compiled = [ids._read_blocks.stats.cache_misses, ids._backward_blocks.stats.cache_misses]
print(sum(sum(misses.values()) for misses in loops_compiled), len(loops._COMPILED_ALONE),
      sum(alone.cache_hits for alone in loops._COMPILED_ALONE.values()))
"""
    done = subprocess.run(
        [sys.executable, "-c", step, settings],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    compiled, alone, from_disk = map(int, done.stdout.split())
    assert compiled == 0  # the parallel loops: from disk
    assert alone == 4 and from_disk == 4  # their row functions, forward and backward: too
