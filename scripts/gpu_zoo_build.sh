#!/usr/bin/env bash
# The zoo build as run on a lent GPU (one call of the device tool), and its CPU rehearsal.
#
#   scripts/gpu_zoo_build.sh [--rehearse | --any-backend] [--budget SECONDS] [--pack FILE]
#                            [--work DIR] [-- extra `styledrop zoo build` options]
#
# On the GPU machine (Python 3.12, JAX with CUDA, no fonts, no network, the checkout not
# installed): installs the wheels carried in .whl/ when there are any, refuses to run
# unless JAX sees a GPU, checks the model code on this machine's JAX and Flax, runs the fast
# tests of the build path, a tiny build through the same code, then the real build within
# --budget seconds (default 420; give the device call a timeout about 60 s longer).
# Results go to $OUT (the device tool brings that folder back, even from a cut run):
# build_log.jsonl, build_summary.json, samples.png, vq-*.safetensors, zoo-*.safetensors.
# Rebuild the zoo folder from them with `styledrop zoo unshard --shards DIR --out ZOO`.
#
# --rehearse runs the tiny build only, on any backend (the test suite runs it on CPU).
# --any-backend runs the whole GPU sequence on any backend, the real build cut to --budget:
# a rehearsal of the GPU call on the GPU machine's package versions where no GPU is
# (scripts/rehearse_gpu_versions.sh runs it so).
# The data pack (`styledrop zoo pack --out .zoo_pack/world.npz`) travels in an ignored
# folder: name `.zoo_pack` (and `.whl`, if any) in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."

rehearse=0
any_backend=0
budget=420
pack=.zoo_pack/world.npz
work=${TMPDIR:-/tmp}/styledrop-zoo-build
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) rehearse=1 ;;
        --any-backend) any_backend=1 ;;
        --budget) budget=$2; shift ;;
        --pack) pack=$2; shift ;;
        --work) work=$2; shift ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
out=${OUT:-out/gpu-zoo-build}
mkdir -p "$out"
# shellcheck source=scripts/gpu_env.sh
. "$(dirname "$0")/gpu_env.sh"
if [ ! -f "$pack" ]; then
    echo "error: no data pack at $pack; write it where the fonts are: styledrop zoo pack --out $pack" >&2
    exit 2
fi

# A few seconds: the model code's JAX / Flax NNX calls on this machine's versions. A carried
# flax that does not work with this JAX gives way to the one installed here.
nnx_check='
import jax, jax.numpy as jnp, optax, flax
from flax import nnx
from muse.config import TransformerConfig
from muse.transformer import UVit2D
print("python", __import__("sys").version.split()[0], "jax", jax.__version__, "flax",
      flax.__version__, "optax", optax.__version__, "devices", jax.devices())
model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
grads = nnx.grad(lambda m: (m(jnp.ones((3, 4))) ** 2).mean())(model)
optimizer.update(model, grads)
UVit2D(TransformerConfig.tiny(), rngs=nnx.Rngs(0))
'
if ! "$python" -c "$nnx_check"; then
    if [ -d /tmp/site/flax ]; then
        echo "the carried flax fails here; trying the installed one" >&2
        rm -rf /tmp/site/flax /tmp/site/flax-*.dist-info
        "$python" -c "$nnx_check"
    else
        exit 4
    fi
fi

build() {  # build NAME BUDGET RESULTS [options...]
    local name=$1 seconds=$2 results=$3
    shift 3
    "$python" -m cli zoo build --data "$pack" --out "$work/$name" --results "$results" \
        --time-budget "$seconds" "$@"
}

tiny=(--size 32 --subjects penguin,dog,cat,banana,car,letter_a
      --draws vq=1,base=2,judge=0,eval=1,canonical=2
      --vq-channels 8,16 --vq-codes 32 --vq-batch 8 --vq-warmup 5 --vq-max-steps 40
      --base-width 32 --base-layers 2 --base-descriptor-pairs 1 --base-batch 8 --base-warmup 5
      --base-position-embedding --base-canonical-repeats 1
      --base-max-steps 30
      --text-retention-steps 2 --text-batch 8
      --probe-steps 3 --reserve-s 5 --samples-per-prompt 1)

if [ "$rehearse" = 1 ]; then
    build rehearsal 150 "$out" "${tiny[@]}" "${extra[@]}"
    exit 0
fi

"$python" -m pytest -q -x -p no:cacheprovider tests/zoo_build/test_shards.py tests/test_import_graph.py
# The tiny build with fixed step counts (one compilation per trainer; the probes ran in the
# CPU rehearsal) and one sample prompt: the whole path, on this machine's versions.
build rehearsal 150 "$work/rehearsal-results" "${tiny[@]}" --probe-steps 0 --sample-prompts "a penguin"
# The transplant path the real build takes, on the same tiny sizes: a VQ of other codes, a
# base starting from the rehearsal's transformer.
build transplant 150 "$work/transplant-results" "${tiny[@]}" --probe-steps 0 \
    --samples-per-prompt 0 --vq-codes 24 --vq-max-steps 2 --base-max-steps 2 \
    --text-retention-steps 0 --base-transplant "$work/rehearsal/zoo/transformer.safetensors" \
    --base-transplant-steps 2
# The base's data as the committed zoo's: 24 styled canonical draws per subject, the plain
# one repeated so that it keeps a quarter of the pool (docs/zoo.md, "The world's own styles").
# The committed text encoder has had the text stage's fine-tune already (step 5 there), so
# the real build takes it as it is and gives the time to the VQ and the base.
# The base starts from the committed base's transformer (width 192, 6 layers; on the
# halved 16x16 grid its layers see the 8x8 grid they were trained on): only the tensors of
# the new tokenizer train first, then everything ("Transplant" in docs/zoo.md). A later
# loan continues its own zoo instead (--init).
transplant=(--base-layers 6 --base-transplant styledrop/zoo/weights/transformer.safetensors)
case " ${extra[*]} " in *" --init "*) transplant=() ;; esac
build real "$budget" "$out" --base-position-embedding --text-retention-steps 0 \
    --draws vq=2,base=8,judge=16,eval=2,canonical=24 --base-canonical-repeats 7 \
    "${transplant[@]}" "${extra[@]}"
