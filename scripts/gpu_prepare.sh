#!/usr/bin/env bash
# Prepares what the lent-GPU scripts need, here where the fonts and PyPI are:
#
#   scripts/gpu_prepare.sh [--wheels-only]
#
# - the data pack of scripts/gpu_zoo_build.sh (.zoo_pack/world.npz; not with --wheels-only);
# - the pure-Python wheels the GPU image lacks (.whl/): ftfy and wcwidth for the CLIP
#   tokenizer and flax at our tested version (both scripts); diffusers, which builds the
#   random-weight fixtures and is the parity tests' reference, and open_clip_torch, whose
#   BPE merges the tokenizer is built from (scripts/gpu_bench.sh). About 9 MB in all.
# Both folders are git-ignored: name them in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
if [ "${1:-}" != --wheels-only ]; then
    "$bin/styledrop" zoo pack --out .zoo_pack/world.npz
fi
version() { "$bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
"$bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "flax==$(version flax)" "ftfy==$(version ftfy)" "wcwidth==$(version wcwidth)" \
    "diffusers==$(version diffusers)" "open_clip_torch==$(version open_clip_torch)"
du -sh .whl $([ -d .zoo_pack ] && echo .zoo_pack)
