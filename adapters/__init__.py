"""StyleDrop adapters (rounds 1 and 2) and LoRA for NNX models, and their files.

Typical use (the model is a `muse.transformer.UVit2D`; nothing of `muse` is imported
here, the model is found by duck typing, see `adapters.inject`):

    spec = AdapterSpec("r1")
    k = inject_adapter(model, spec, rngs=nnx.Rngs(0),
                       gate_source=muse.transformer.current_adapter_gate)
    optimizer = nnx.Optimizer(model, optax.adam(3e-5), wrt=AdapterParam)
    ...  # train
    save_adapter_file(path, adapter_state_dict(model, k), spec,
                      {"base_model": "amused/amused-256", "base_model_sha256": sha256, ...})

    loaded = read_adapter_file(path, expected_base_hash=sha256)
    k = inject_adapter(model, loaded.spec, rngs=nnx.Rngs(0), gate_source=...)
    load_adapter_state(model, k, loaded.tensors)
"""

from adapters.files import (
    AdapterFile,
    AdapterFileError,
    read_adapter_file,
    save_adapter_file,
)
from adapters.inject import (
    AdapterStateError,
    adapter_indices,
    adapter_state_dict,
    count_parameters,
    inject_adapter,
    load_adapter_state,
    remove_adapters,
)
from adapters.params import AdapterParam, AdapterSpec

__all__ = [
    "AdapterFile",
    "AdapterFileError",
    "AdapterParam",
    "AdapterSpec",
    "AdapterStateError",
    "adapter_indices",
    "adapter_state_dict",
    "count_parameters",
    "inject_adapter",
    "load_adapter_state",
    "read_adapter_file",
    "remove_adapters",
    "save_adapter_file",
]
