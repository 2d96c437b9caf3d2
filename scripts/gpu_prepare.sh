#!/usr/bin/env bash
# Prepares what the lent-GPU scripts need, here where the fonts and PyPI are:
#
#   scripts/gpu_prepare.sh [--wheels-only] [--zoo-only]
#
# - the data pack of scripts/gpu_zoo_build.sh (.zoo_pack/world.npz; not with --wheels-only);
# - the pure-Python wheels the GPU image lacks (.whl/): ftfy and wcwidth for the CLIP
#   tokenizer and flax at the version tested on the GPU image's JAX (both scripts; see
#   GPU_FLAX below); diffusers, which builds the
#   random-weight fixtures and is the parity tests' reference, and open_clip_torch, whose
#   BPE merges the tokenizer is built from (scripts/gpu_bench.sh). About 9 MB in all;
#   --zoo-only keeps the first three (1.4 MB), what the zoo build needs, which leaves room
#   in the 64 MiB a device call carries for an earlier build's zoo (`zoo build --init`).
# Both folders are git-ignored: name them in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
pack=1
wheels=(flax ftfy wcwidth diffusers open_clip_torch)
for option in "$@"; do
    case "$option" in
        --wheels-only) pack=0 ;;
        --zoo-only) wheels=(flax ftfy wcwidth) ;;
        *) echo "unknown option $option (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done
if [ "$pack" = 1 ]; then
    "$bin/styledrop" zoo pack --out .zoo_pack/world.npz
fi
# The GPU image has JAX 0.11 on Python 3.12. The flax installed here (0.12.8, the last for
# Python 3.11) fails to import there (`jax.experimental.hijax` has no `HiPrimitive` in JAX
# 0.11); 0.12.10 to 0.12.12 import on JAX 0.11.2 but need Python >= 3.12. So the
# GPU gets its own flax, rehearsed on the image's versions by scripts/rehearse_gpu_versions.sh.
GPU_FLAX=${GPU_FLAX:-0.12.12}
version() { "$bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pinned=()
for name in "${wheels[@]}"; do
    if [ "$name" = flax ]; then pinned+=("flax==$GPU_FLAX"); else pinned+=("$name==$(version "$name")"); fi
done
rm -rf .whl && mkdir -p .whl
"$bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${pinned[@]}"
du -sh .whl $([ -d .zoo_pack ] && echo .zoo_pack)
