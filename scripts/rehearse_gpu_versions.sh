#!/usr/bin/env bash
# Rehearses the lent-GPU zoo build on the GPU image's package versions, on this machine's CPU:
#
#   scripts/rehearse_gpu_versions.sh [--root DIR] [--full | --bench | --tests [PYTEST ARGS...]]
#
# The GPU image runs Python 3.12 with JAX 0.11.2, numpy 2.5.2, transformers 5.17.0 and torch
# 2.11.0 (the versions below; docs/gpu.md). JAX 0.11 needs Python >= 3.12, which Debian 12
# lacks, so these versions cannot be installed beside the project's own. This script builds
# a Debian 13 root (Python 3.13) in DIR with debootstrap, installs those versions there from
# PyPI, copies the checkout with the carried wheels and the data pack into it
# (scripts/gpu_prepare.sh writes them first), and runs in it:
# - by default, `scripts/gpu_zoo_build.sh --rehearse`: the tiny build (about 1 min);
# - with --full, the whole GPU call, `scripts/gpu_zoo_build.sh --any-backend --budget 300`:
#   the tests, the tiny builds and the real build cut to 300 s (about 8 min on 2 cores);
# - with --bench, `scripts/gpu_bench.sh --rehearse`: ours and diffusers, tiny (about 4 min);
# - with --tests, pytest on the checkout, with PYTEST ARGS if given (the default suite
#   otherwise; the browser test has no Chromium there).
# The root is kept between runs (about 8 GB, most of it torch's CUDA libraries) and
# reused; the checkout in it is copied anew each run. Needs root, debootstrap and the
# network to Debian's and PyPI's registries; nothing here is needed by the tests or CI.
# It mounts /proc and binds /dev into DIR for the run and unmounts them when it exits; if a
# run was killed, `umount DIR/proc DIR/dev` before deleting DIR (rm -r would reach /dev).
set -euo pipefail
cd "$(dirname "$0")/.."

root=${TMPDIR:-/tmp}/styledrop-gpu-versions
mode=rehearse
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift ;;
        --full) mode=full ;;
        --bench) mode=bench ;;
        --tests) mode=tests; shift; pytest_args=("$@"); break ;;
        *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$(id -u)" != 0 ]; then
    echo "error: debootstrap and chroot need root" >&2
    exit 2
fi
if [ ! -f .zoo_pack/world.npz ] || ! compgen -G ".whl/flax-*.whl" >/dev/null; then
    echo "error: no data pack or carried wheels; run scripts/gpu_prepare.sh first" >&2
    exit 2
fi

# The GPU image's versions (the device tool's KINDS.md, read 2026-11). torch's own pin of
# nvidia-nccl-cu13 (2.28.9) is not on PyPI's mirror here; 2.32.3 has the symbols it needs.
# The image has a flax of its own (with msgpack, orbax-checkpoint, ...); the calls carry
# flax 0.12.12 over it (scripts/gpu_prepare.sh).
gpu_python_packages=(jax==0.11.2 jaxlib==0.11.2 numpy==2.5.2 transformers==5.17.0
    tokenizers==0.23.2 safetensors==0.8.0 huggingface_hub==1.33.0 flax==0.12.12 optax chex pillow tqdm
    pytest pytest-xdist filelock typing-extensions "setuptools<82" sympy networkx jinja2
    fsspec regex pyyaml)
torch_cuda_libraries=("cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.2"
    "cuda-bindings>=13.0.3,<14" nvidia-cudnn-cu13==9.19.0.56 nvidia-cusparselt-cu13==0.8.0
    nvidia-nccl-cu13==2.32.3 nvidia-nvshmem-cu13==3.4.5 triton==3.6.0)
# What the rest of the test suite needs (--tests), at PyPI's versions for Python 3.13.
test_packages=(open_clip_torch "celery[redis]" redis streamlit "diffusers<0.43" "peft<0.22"
    "moto[server]" s3fs playwright)

in_root() { chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }
pip_in_root() { in_root /venv/bin/pip install -q --disable-pip-version-check "$@"; }

mounted=()
unmount() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || true; done; }
trap unmount EXIT
mount_in_root() {  # mount_in_root TYPE_OR_--bind SOURCE TARGET
    if ! mountpoint -q "$root$3"; then
        mkdir -p "$root$3"
        if [ "$1" = --bind ]; then mount --bind "$2" "$root$3"; else mount -t "$1" "$2" "$root$3"; fi
        mounted+=("$root$3")
    fi
}

installed="${gpu_python_packages[*]} ${torch_cuda_libraries[*]} ${test_packages[*]}"
install=0
[ "$(cat "$root/venv/.installed" 2>/dev/null)" = "$installed" ] || install=1
if [ "$install" = 1 ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    [ -x "$root/usr/bin/python3" ] || debootstrap --variant=minbase \
        --include=python3,python3-venv,ca-certificates,fontconfig,fonts-noto-color-emoji,fonts-symbola,fonts-dejavu-core,redis-server \
        trixie "$root" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mount_in_root proc proc /proc
mount_in_root --bind /dev /dev
if [ "$install" = 1 ]; then
    in_root python3 -m venv /venv
    pip_in_root "${gpu_python_packages[@]}"
    pip_in_root --no-deps torch==2.11.0 torchvision==0.26.0
    pip_in_root "${torch_cuda_libraries[@]}"
    pip_in_root "${test_packages[@]}"
    echo "$installed" > "$root/venv/.installed"
fi

rm -rf "$root/src/checkout" && mkdir -p "$root/src/checkout"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$root/src/checkout"
cp -r .whl .zoo_pack "$root/src/checkout/"
in_root /venv/bin/python -c 'import sys, jax, numpy, torch, transformers
print("rehearsing on python", sys.version.split()[0], "jax", jax.__version__, "numpy",
      numpy.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'

run_in_checkout() { in_root bash -c 'cd /src/checkout && "$@"' _ "$@"; }
case "$mode" in
    rehearse) run_in_checkout env PYTHON=/venv/bin/python OUT=/tmp/gpu-rehearsal \
        scripts/gpu_zoo_build.sh --rehearse ;;
    full) run_in_checkout env PYTHON=/venv/bin/python OUT=/tmp/gpu-rehearsal \
        scripts/gpu_zoo_build.sh --any-backend --budget 300 ;;
    bench) run_in_checkout env PYTHON=/venv/bin/python OUT=/tmp/gpu-rehearsal \
        scripts/gpu_bench.sh --rehearse ;;
    tests)
        # The carried wheels as the GPU call installs them (flax at the GPU's version), and
        # the checkout itself for the `styledrop` command.
        run_in_checkout /venv/bin/pip install -q --no-index --no-deps --upgrade \
            --target /tmp/site .whl/*.whl
        run_in_checkout /venv/bin/pip install -q --no-deps -e .
        run_in_checkout env PYTHONPATH=/tmp/site:/src/checkout /venv/bin/python -m pytest \
            -p no:cacheprovider "${pytest_args[@]}" ;;
esac
