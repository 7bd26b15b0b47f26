#!/usr/bin/env bash
# Every table of the docs, measured again at this commit on this machine: each benchmark's
# Markdown (its first line names its command, commit, machine and date) goes to
# docs/results/NAME.md, which the docs pages include as it is; the lecture's plots go to
# docs/lecture/. About 105 minutes on the 2-core development machine; run it alone on the machine
# (the speed tables are ratios measured side by side, but a busy machine still moves them).
#
#   bash benchmarks/regenerate.sh [NAME ...]    (none: all, in this order)
#
# Needs the project's virtual environment with the dev and bench extras
# (pip install -e ".[dev,bench]"), ../shared/data beside the checkout, Chromium for the page.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
out=docs/results
runs=runs/regenerate
mkdir -p "$out" "$runs"
names=("${@:-first_run compile results lecture tasks diagonal epoch predict serve page sequence suite suite_rnn speech esn distributed layer}")
read -r -a names <<<"${names[*]}"

beside() {  # COMMIT SCRIPT [ARGS]: a benchmark with --against a worktree of COMMIT (interleaved)
    local base=$runs/base_$1 status
    git worktree remove --force "$base" 2>/dev/null || rm -rf "$base"
    git worktree add -q --detach "$base" "$1" || return 1
    python "${@:2}" --against "$base/src"
    status=$?
    git worktree remove --force "$base"
    return $status
}

model() {  # the reference IMDB model, seed 0, trained once for the serving benchmarks
    [ -f "$runs/imdb/metrics.json" ] || elman train imdb --data "$data/aclImdb.tar.gz" \
        --out "$runs/imdb" --overwrite --no-progress >/dev/null
}

failed=()
for name in "${names[@]}"; do
    echo "== $name ($(date -u +%H:%M:%S))" >&2
    if ! case $name in
    first_run) beside 6f6ca17 benchmarks/first_run.py --data "$data/aclImdb.tar.gz" ;;
    compile) beside 7a6de0d benchmarks/compile.py ;;
    results) python benchmarks/results.py ;;
    lecture) python benchmarks/lecture.py --data "$data/aclImdb.tar.gz" --out docs/lecture \
        --runs "$runs/lecture" ;;
    tasks) python benchmarks/tasks.py --out docs/lecture ;;
    diagonal) python benchmarks/diagonal.py ;;
    epoch) python benchmarks/epoch.py --data "$data/aclImdb.tar.gz" ;;
    predict) model && python benchmarks/predict.py --model "$runs/imdb" \
        --data "$data/aclImdb.tar.gz" ;;
    serve) model && python benchmarks/serve.py --model "$runs/imdb" \
        --data "$data/aclImdb.tar.gz" ;;
    page) model && python benchmarks/page.py --text "$runs/imdb" \
        --data "$data/aclImdb.tar.gz" ;;
    sequence) python benchmarks/sequence.py --data "$data/fsdd.tar.gz" ;;
    layer) python benchmarks/layer.py --rounds 2 ;;
    suite) python benchmarks/suite.py --sets series,fsdd --seeds 3 --all-seeds ;;
    suite_rnn) python benchmarks/suite.py --sets series,fsdd --seeds 3 --all-seeds -- --model rnn ;;
    speech) for flags in "--model lstm" "--model gru" "--model rnn --bidirectional --pooling max+mean"; do
        # shellcheck disable=SC2086
        python benchmarks/suite.py --sets fsdd --seeds 3 --all-seeds -- $flags && echo
    done ;;
    esn) python benchmarks/esn.py --seeds 3 ;;
    distributed) python benchmarks/distributed.py --data "$data/aclImdb.tar.gz" ;;
    *) echo "unknown benchmark $name" >&2 && exit 2 ;;
    esac >"$out/$name.md.partial"; then
        failed+=("$name") && echo "== $name FAILED: its old table stays" >&2 && continue
    fi
    mv "$out/$name.md.partial" "$out/$name.md"
done
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2 && exit 1; }
