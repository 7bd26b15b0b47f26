#!/usr/bin/env bash
# The GPU checks, in ONE run on a lent CUDA machine (the `device` tool), about 4 minutes:
# the CUDA tests (captured step against eager steps, fit with and without the CUDA graph, a model
# trained on the GPU resuming and predicting on the CPU), benchmarks/gpu_step.py (eager and
# captured steps, elman and nn.RNN), and the full `elman train imdb --device cuda` with its
# saved model predicting on the CPU.
#
# Here, once (the device machine has no internet and lacks three pure-Python packages; .whl and
# .gpudata are ignored through .git/info/exclude, ~56 MB travel):
#   printf '/.whl/\n/.gpudata/\n' >> .git/info/exclude && mkdir -p .gpudata
#   cp ../shared/data/aclImdb.tar.gz ../shared/data/aclImdb.tar.gz.sha256 .gpudata/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       pooch==1.9.0 torchinfo==1.8.0 platformdirs
# Then:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpudata"], timeout_s=560)
# Every log lands in $OUT (it comes back even if the run is cut off).
set -uo pipefail
export PYTHONUNBUFFERED=1 ELMAN_CACHE=/tmp/elman-cache
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
export PYTHONPATH="$PWD/src:$PWD:/tmp/site"
# The tests read the real archive from ../shared/data, as on the development machine.
mkdir -p ../shared/data && ln -sf "$PWD"/.gpudata/aclImdb.tar.gz* ../shared/data/
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/machine.log"
python3 -c "import torch, numba; print('torch', torch.__version__, 'numba', numba.__version__)" \
    | tee -a "$OUT/machine.log"

echo "== 1. CUDA tests, and the layer's boundary, operators and nn.RNN contract on 16 threads"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_device.py \
    tests/kernels/test_cuda.py tests/kernels/test_checks.py tests/kernels/test_ops.py \
    tests/test_rnn_drop_in.py 2>&1 | tee "$OUT/tests.log"

echo "== 2. benchmarks/gpu_step.py"
timeout 120 python3 benchmarks/gpu_step.py 2>&1 | tee "$OUT/gpu_step.log"

echo "== 3. elman train imdb --device cuda (the reference run), then predict on the CPU"
for cuda_graph in auto off; do
    timeout 150 python3 -m elman train imdb --data .gpudata/aclImdb.tar.gz --device cuda \
        --cuda-graph "$cuda_graph" --out "/tmp/model-$cuda_graph" --overwrite 2>&1 \
        | tr '\r' '\n' | grep -v "it/s]$" | tee "$OUT/train-$cuda_graph.log"
done
cp /tmp/model-auto/metrics.json "$OUT/metrics-auto.json"; cp /tmp/model-off/metrics.json "$OUT/metrics-off.json"
for device in cuda cpu; do  # the same saved model, read on each device: the same labels and probabilities
    timeout 60 python3 -m elman predict --model /tmp/model-auto --device "$device" --json \
        "A wonderful film: the acting, the story, all of it." \
        "Dull and far too long; I nearly walked out." 2>&1 | tee "$OUT/predict-$device.log"
done
