#!/usr/bin/env bash
# Ours against diffusers + peft on a lent GPU (one call of the device tool), and its CPU
# rehearsal.
#
#   scripts/gpu_bench.sh [--rehearse] [--budget SECONDS] [--config NAME] [--work DIR]
#                        [-- extra `python -m bench.gpu` options, e.g. --only sampling]
#
# On the GPU machine (Python 3.12, JAX with CUDA, no network, the checkout not installed):
# installs the wheels carried in .whl/ when there are any (scripts/gpu_prepare.sh
# --wheels-only), refuses to run unless JAX sees a GPU, writes the environment
# (`styledrop doctor --json`), runs the parity tests against the PyTorch reference at full
# float32 precision (JAX_DEFAULT_MATMUL_PRECISION=highest: no TF32), then `python -m
# bench.gpu --device cuda` on aMUSEd-512-shaped random weights (--config, default
# amused_512) within --budget seconds (default 360, fixture included; give the device call
# a timeout about 150 s longer): figure by figure, most wanted first, our run then the
# diffusers one on the same GPU and precision, each in its own process; see bench/gpu.py
# for the order and the JSON. The reference needs diffusers and peft (with accelerate).
# Results go to $OUT (the device tool brings that folder back, even from a cut run):
# doctor.json, parity.xml (JUnit), gpu_bench.json (rewritten after every run).
#
# --rehearse runs the tiny configuration on any backend and the reference on the CPU
# (--device cpu), one repetition without warm-up, 2-step fine-tunes, without the parity
# tests (the test suite runs them) and the matmuls: the test suite runs it on CPU. Random
# checkpoints are built under --work (default $TMPDIR/styledrop-gpu-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

rehearse=0
budget=360
config=amused_512
work=${TMPDIR:-/tmp}/styledrop-gpu-bench
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) rehearse=1 ;;
        --budget) budget=$2; shift ;;
        --config) config=$2; shift ;;
        --work) work=$2; shift ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
out=${OUT:-out/gpu-bench}
mkdir -p "$out"
# shellcheck source=scripts/gpu_env.sh
. "$(dirname "$0")/gpu_env.sh"

"$python" -m cli doctor --json >"$out/doctor.json"

bench=(--out "$out" --cache "$work/fixtures" --budget "$budget")
if [ "$rehearse" = 1 ]; then
    "$python" -m bench.gpu --config tiny --repeats 1 --warmup 0 --finetune-steps 2 \
        --device cpu --skip matmul "${bench[@]}" "${extra[@]}"
    exit 0
fi

JAX_DEFAULT_MATMUL_PRECISION=highest "$python" -m pytest -q -p no:cacheprovider \
    --junitxml="$out/parity.xml" tests/muse/test_transformer_parity.py \
    tests/muse/test_vq_parity.py tests/adapters/test_lora_parity.py ||
    echo "parity tests failed (see above and $out/parity.xml); measuring anyway" >&2
"$python" -m bench.gpu --config "$config" --device cuda "${bench[@]}" "${extra[@]}"
