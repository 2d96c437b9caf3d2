"""Moving weights in and out of NNX modules: flat name maps, PyTorch layouts, safetensors.

Our modules mirror the attribute names of the diffusers modules they port, so a
PyTorch state-dict key can be derived from the NNX path of every parameter:

* `nnx.Linear`: `kernel` [in, out] <- `weight` [out, in] transposed; `bias` <- `bias`.
* `nnx.Conv`: `kernel` [kh, kw, in, out] (HWIO) <- `weight` [out, in, kh, kw].
* `nnx.Embed`: `embedding` <- `weight`.
* `nnx.GroupNorm` / `nnx.LayerNorm`: `scale` <- `weight`; `bias` <- `bias`.
* Our own layers declare `TORCH_PARAMS = {native_name: (torch_name, transform)}`.
* A module may rename children on the PyTorch side with `TORCH_NAMES = {attr: "a.b"}`
  (for example a feed-forward whose layers live at `net.0.proj` and `net.2`).

Conversion is strict: every parameter of the module must be found with the right
shape and every tensor of the file must be used, otherwise a `WeightsError` names
the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from muse.safetensors_file import SafetensorsFile

Transform = Callable[[np.ndarray], np.ndarray]


class WeightsError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or misshapen tensors."""


def identity(array: np.ndarray) -> np.ndarray:
    """Returns the tensor unchanged."""
    return array


def linear_kernel(weight: np.ndarray) -> np.ndarray:
    """[out, in] PyTorch Linear weight -> [in, out] kernel."""
    return weight.T


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """[out, in, kh, kw] PyTorch Conv2d weight -> [kh, kw, in, out] (HWIO) kernel."""
    return weight.transpose(2, 3, 1, 0)


_STANDARD_PARAMS: dict[type, dict[str, tuple[str, Transform]]] = {
    nnx.Linear: {"kernel": ("weight", linear_kernel), "bias": ("bias", identity)},
    nnx.Conv: {"kernel": ("weight", conv_kernel), "bias": ("bias", identity)},
    nnx.Embed: {"embedding": ("weight", identity)},
    nnx.GroupNorm: {"scale": ("weight", identity), "bias": ("bias", identity)},
    nnx.LayerNorm: {"scale": ("weight", identity), "bias": ("bias", identity)},
}


def _param_table(module: nnx.Module) -> dict[str, tuple[str, Transform]]:
    table = getattr(type(module), "TORCH_PARAMS", None)
    if table is not None:
        return table
    for cls, standard in _STANDARD_PARAMS.items():
        if isinstance(module, cls):
            return standard
    return {}


def path_to_name(path: tuple) -> str:
    """Joins an NNX path into a dotted name: ("layers", 0, "kernel") -> "layers.0.kernel"."""
    return ".".join(str(part) for part in path)


def param_paths(model: nnx.Module) -> dict[str, tuple]:
    """Maps the dotted name of every `nnx.Param` (and subclasses) to its NNX path."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {path_to_name(path): tuple(path) for path, _ in flat}


def torch_names(model: nnx.Module) -> dict[str, tuple[str, Transform]]:
    """Maps each native parameter name to its PyTorch key and the layout transform.

    Args:
        model: An NNX module whose attribute names mirror the PyTorch module.

    Returns:
        `{native_name: (torch_key, transform)}` where `transform(torch_tensor)`
        gives the native tensor.
    """
    modules = {tuple(path): module for path, module in nnx.iter_modules(model)}
    mapping: dict[str, tuple[str, Transform]] = {}
    for name, path in param_paths(model).items():
        owner_path, leaf = path[:-1], path[-1]
        owner = modules[owner_path]
        table = _param_table(owner)
        if leaf not in table:
            raise WeightsError(
                f"No PyTorch name known for parameter {name!r} of {type(owner).__name__}"
            )
        torch_leaf, transform = table[leaf]
        parts: list[str] = []
        for depth, part in enumerate(owner_path):
            parent = modules[owner_path[:depth]]
            renames = getattr(type(parent), "TORCH_NAMES", {})
            parts.append(renames.get(part, str(part)))
        mapping[name] = (".".join([*parts, torch_leaf]), transform)
    return mapping


def check_torch_shapes(
    model: nnx.Module, shapes: Mapping[str, tuple[int, ...]], what: str = "checkpoint"
) -> dict[str, tuple[str, Transform]]:
    """Checks PyTorch key names and shapes against the model without touching any data.

    Args:
        model: The target module (abstract shapes are enough, e.g. from `nnx.eval_shape`).
        shapes: PyTorch key -> tensor shape.
        what: A label for error messages, e.g. "transformer".

    Returns:
        `{native_name: (torch_key, transform)}` for every parameter.

    Raises:
        WeightsError: naming every missing, unexpected and misshapen tensor.
    """
    mapping = torch_names(model)
    native_shapes = {name: v.shape for name, v in flat_params(model, abstract=True).items()}
    expected = {torch_key for torch_key, _ in mapping.values()}
    missing = sorted(expected - set(shapes))
    unexpected = sorted(set(shapes) - expected)
    misshapen: list[str] = []
    for name, (torch_key, transform) in mapping.items():
        if torch_key not in shapes:
            continue
        # Transforms are views (transpose / reshape), so a zero-strided stand-in is free.
        stand_in = np.broadcast_to(np.float32(0), tuple(shapes[torch_key]))
        got = tuple(transform(stand_in).shape)
        if got != tuple(native_shapes[name]):
            misshapen.append(
                f"{torch_key}: file {tuple(shapes[torch_key])} -> {got},"
                f" model expects {tuple(native_shapes[name])}"
            )
    _raise_if_mismatched(what, missing, unexpected, misshapen)
    return mapping


def from_torch_state(
    model: nnx.Module, tensors: Mapping[str, np.ndarray], what: str = "checkpoint"
) -> dict[str, np.ndarray]:
    """Converts a PyTorch state dict to native names and layouts, checking it strictly.

    Args:
        model: The target module (abstract shapes are enough, e.g. from `nnx.eval_shape`).
        tensors: PyTorch key -> array (float32, float16 or bfloat16; cast to float32).
        what: A label for error messages, e.g. "transformer".

    Returns:
        Native name -> float32 array, ready for `assign`.

    Raises:
        WeightsError: naming every missing, unexpected and misshapen tensor.
    """
    mapping = check_torch_shapes(model, {k: v.shape for k, v in tensors.items()}, what)
    return {
        name: np.ascontiguousarray(transform(np.asarray(tensors[key])), dtype=np.float32)
        for name, (key, transform) in mapping.items()
    }


def _raise_if_mismatched(
    what: str, missing: list[str], unexpected: list[str], misshapen: list[str]
) -> None:
    if not (missing or unexpected or misshapen):
        return
    lines = [f"The {what} weights do not fit the model configuration:"]
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", misshapen),
    ):
        if keys:
            shown = ", ".join(keys[:20]) + (
                f", ... ({len(keys) - 20} more)" if len(keys) > 20 else ""
            )
            lines.append(f"  {label} ({len(keys)}): {shown}")
    lines.append("Check that the config.json next to the weights belongs to them.")
    raise WeightsError("\n".join(lines))


def build_from_torch_state(
    factory: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray], what: str
) -> nnx.Module:
    """Builds a module without random initialisation and fills it from a PyTorch state dict.

    Args:
        factory: Builds the module, e.g. `lambda: UVit2D(cfg, rngs=nnx.Rngs(0))`; it runs
            abstractly under `nnx.eval_shape`, so no parameter memory is initialised.
        tensors: PyTorch key -> array.
        what: A label for error messages.

    Returns:
        The module with every parameter set.

    Raises:
        WeightsError: naming every missing, unexpected or misshapen tensor.
    """
    model = nnx.eval_shape(factory)
    assign(model, from_torch_state(model, tensors, what), what)
    leftovers = [
        path_to_name(path)
        for path, variable in nnx.to_flat_state(nnx.state(model))
        if isinstance(variable.get_value(), jax.ShapeDtypeStruct)
    ]
    if leftovers:
        raise WeightsError(f"The {what} state has values no checkpoint sets: {leftovers}")
    return model


def flat_params(model: nnx.Module, abstract: bool = False) -> dict[str, np.ndarray]:
    """Returns every parameter as `{dotted_name: array}` (shape structs if `abstract`)."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    out = {}
    for path, variable in flat:
        value = variable.get_value() if hasattr(variable, "get_value") else variable.value
        out[path_to_name(path)] = value if abstract else np.asarray(value)
    return out


def check_shapes(
    model: nnx.Module, shapes: Mapping[str, tuple[int, ...]], what: str = "checkpoint"
) -> None:
    """Checks `{dotted_name: shape}` against the module's parameters, strictly.

    Raises:
        WeightsError: naming every missing, unexpected and misshapen tensor.
    """
    paths = param_paths(model)
    current = flat_params(model, abstract=True)
    missing = sorted(set(paths) - set(shapes))
    unexpected = sorted(set(shapes) - set(paths))
    misshapen = [
        f"{name}: file {tuple(shapes[name])}, model expects {tuple(current[name].shape)}"
        for name in sorted(set(paths) & set(shapes))
        if tuple(shapes[name]) != tuple(current[name].shape)
    ]
    _raise_if_mismatched(what, missing, unexpected, misshapen)


def _set_each(model: nnx.Module, fetch: Callable[[str], np.ndarray]) -> None:
    """Sets every parameter to `fetch(dotted_name)`, cast to the parameter's dtype.

    One tensor is fetched and handed to JAX at a time, so a loader that reads lazily
    holds at most one tensor beyond the model.
    """
    current = flat_params(model, abstract=True)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    for path, variable in flat:
        name = path_to_name(path)
        variable.set_value(jnp.asarray(fetch(name), dtype=current[name].dtype))
    nnx.update(model, nnx.from_flat_state(flat))


def assign(model: nnx.Module, params: Mapping[str, np.ndarray], what: str = "checkpoint") -> None:
    """Writes `{dotted_name: array}` into the module's parameters, strictly.

    Raises:
        WeightsError: if names or shapes differ from the module's parameters.
    """
    check_shapes(model, {name: value.shape for name, value in params.items()}, what)
    _set_each(model, params.__getitem__)


def save_params(
    model: nnx.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Saves every parameter of `model` to a safetensors file, atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(flat_params(model), str(tmp), metadata=metadata)
    tmp.replace(path)


def load_params(model: nnx.Module, path: str | Path, what: str | None = None) -> None:
    """Loads a safetensors file written by `save_params` into `model`, strictly.

    Names and shapes are checked from the file's header first; then the tensors are read
    one at a time without a memory map, so loading holds the model plus one tensor (not
    the model plus the file).

    Raises:
        WeightsError: if names or shapes differ from the module's parameters.
        SafetensorsFormatError, OSError: if the file cannot be read.
    """
    what = what or Path(path).name
    with SafetensorsFile(path) as tensors:
        check_shapes(model, tensors.shapes(), what)
        _set_each(model, tensors.read)
