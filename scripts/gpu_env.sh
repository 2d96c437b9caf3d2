# Sourced by the GPU scripts (gpu_zoo_build.sh, gpu_bench.sh) after their options are read:
# the Python to use, the carried wheels, the checkout on PYTHONPATH, and the refusal to run
# without a GPU unless $rehearse or $any_backend is 1. Sets $python and $backend.
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

# The carried wheels are for the GPU image's Python, 3.12 (scripts/gpu_prepare.sh; its flax
# needs >= 3.12); on an older Python, a rehearsal here, the installed packages serve.
if compgen -G ".whl/*.whl" >/dev/null && "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The checkout itself (not installed on the GPU machine; harmless where it is).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

backend=$("$python" -c 'import jax; print(jax.default_backend())')
echo "JAX backend: $backend"
if [ "$backend" != gpu ] && [ "$rehearse" = 0 ] && [ "${any_backend:-0}" = 0 ]; then
    echo "error: JAX sees no GPU ($backend); this script is for a lent GPU (--rehearse to try it here)" >&2
    exit 3
fi
