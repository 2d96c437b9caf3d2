#!/usr/bin/env bash
# Prepares what scripts/gpu_zoo_build.sh needs on a lent GPU, here where the fonts and PyPI
# are: the data pack (.zoo_pack/world.npz) and the pure-Python wheels the GPU image lacks
# (.whl/: ftfy and wcwidth for the CLIP tokenizer; flax at our tested version). Both
# folders are git-ignored: name them in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
"$bin/styledrop" zoo pack --out .zoo_pack/world.npz
version() { "$bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
"$bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "flax==$(version flax)" "ftfy==$(version ftfy)" "wcwidth==$(version wcwidth)"
du -sh .zoo_pack .whl
