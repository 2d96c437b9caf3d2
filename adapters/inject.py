"""Putting adapters into a model, naming their weights, reading them back, taking them out.

Works on any NNX model by duck typing; nothing of the model's package is imported:

* StyleDrop adapters (r1, r2) go into every module that has the two `nnx.List` slots
  `adapter_attn` and `adapter_ff` (a "host", e.g. a transformer layer). The residual
  width D of a host is the output width of its attention's `to_out` linear layer.
* LoRA wraps every `nnx.Linear` whose PyTorch-style name matches a target (PEFT's rule:
  equal to it, or ending in "." + target). PyTorch names come from the NNX path, with a
  parent's `TORCH_NAMES = {attribute: "torch.name"}` class attribute renaming children.

Adapter indices k count up from 0 in injection order: a new adapter gets one more than
the highest index present (0 when none is), so removing one adapter never renumbers the
others. An adapter's weights are named independently of k:

* r2: `<prefix>.<host>.<slot>.down` [D, H] and `.up` [H, D] (kernel layout, x @ W);
* r1: shared `<prefix>.<slot>.down` [D, H] and `.up` [H, D], per layer
  `<prefix>.<host>.<slot>.down_offset` [H] and `.up_offset` [D];
* LoRA (PEFT / diffusers keys): `<prefix>.<module>.lora_A.weight` [r, in] and
  `.lora_B.weight` [out, r], e.g. `transformer.transformer_layers.0.attn1.to_q.lora_A.weight`.

Base weights: LoRA moves a wrapped layer's weights from `<name>.kernel` to
`<name>.base_layer.kernel`, and every adapter adds `nnx.Param` leaves (`AdapterParam`)
that base-checkpoint code does not know. Save or convert base weights before injecting,
or call `remove_adapters` first, which restores the original module objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapters.layers import (
    BottleneckAdapter,
    FactorisedAdapter,
    GateSource,
    LoRABranch,
    LoRALinear,
    SharedBottleneck,
)
from adapters.params import POSITIONS, AdapterParam, AdapterSpec

_SLOT_ADAPTERS = (BottleneckAdapter, FactorisedAdapter)
_ALL_ADAPTERS = (*_SLOT_ADAPTERS, LoRABranch)


class AdapterStateError(ValueError):
    """Adapter weights do not fit the injected adapter: missing, unexpected or misshapen."""


class _Site(NamedTuple):
    """Where one adapter module goes: a host slot (r1 / r2) or a linear layer (LoRA)."""

    name: str  # PyTorch-style name of the host or of the linear layer
    parent: nnx.Module  # the host (r1 / r2) or the module holding the linear layer
    key: str | int  # the slot name (r1 / r2) or the attribute / list index of the layer
    shape: tuple[int, int]  # (D, D) for a slot; (in_features, out_features) for LoRA


def _modules(model: nnx.Module) -> dict[tuple, nnx.Module]:
    """Every submodule by NNX path (a module shared by several parents appears once)."""
    return {tuple(path): module for path, module in nnx.iter_modules(model)}


def _torch_name(path: tuple, modules: Mapping[tuple, nnx.Module]) -> str:
    """PyTorch-style dotted name of the module at `path` (parents' TORCH_NAMES applied)."""
    parts = []
    for depth, part in enumerate(path):
        renames = getattr(type(modules[path[:depth]]), "TORCH_NAMES", {})
        parts.append(str(renames.get(part, part)))
    return ".".join(parts)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _is_host(module: nnx.Module) -> bool:
    return all(isinstance(getattr(module, slot, None), nnx.List) for slot in POSITIONS)


def _linear_shape(layer: nnx.Module) -> tuple[int, int]:
    return int(layer.in_features), int(layer.out_features)


def _residual_width(host: nnx.Module, name: str) -> int:
    """Output width of the host's first attention (`to_q/to_k/to_v/to_out`) = its width D."""
    for _, module in nnx.iter_modules(host):
        if all(hasattr(module, attr) for attr in ("to_q", "to_k", "to_v", "to_out")):
            out = module.to_out
            return _linear_shape(out[0] if isinstance(out, nnx.List) else out)[1]
    raise ValueError(f"Cannot tell the width of adapter host {name!r}: it has no attention.")


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _slot_sites(model: nnx.Module) -> list[_Site]:
    modules = _modules(model)
    sites = []
    for path, module in modules.items():
        if _is_host(module):
            name = _torch_name(path, modules)
            width = _residual_width(module, name)
            sites.extend(_Site(name, module, slot, (width, width)) for slot in POSITIONS)
    if not sites:
        raise ValueError(
            f"The model has no adapter slots (modules with {' and '.join(POSITIONS)} lists)."
        )
    return sites


def _lora_sites(model: nnx.Module, targets: tuple[str, ...]) -> list[_Site]:
    modules = _modules(model)
    sites, matched, wrong = [], set(), []
    for path, module in modules.items():
        if not path or isinstance(modules[path[:-1]], LoRALinear):
            continue  # the root, or a wrapped layer (its wrapper is the site)
        name = _torch_name(path, modules)
        native = ".".join(str(part) for part in path)
        hits = {t for t in targets if _matches(name, t) or _matches(native, t)}
        if not hits:
            continue
        if isinstance(module, nnx.Linear | LoRALinear):
            sites.append(_Site(name, modules[path[:-1]], path[-1], _linear_shape(module)))
            matched |= hits
        else:
            wrong.append(f"{name} ({type(module).__name__})")
    if wrong:
        raise ValueError(f"LoRA targets must be linear layers; these match too: {wrong}.")
    unmatched = sorted(set(targets) - matched)
    if unmatched:
        raise ValueError(f"LoRA targets {unmatched} match no linear layer of the model.")
    return sites


def _sites(model: nnx.Module, spec: AdapterSpec) -> list[_Site]:
    return _lora_sites(model, spec.lora_targets) if spec.kind == "lora" else _slot_sites(model)


def _build(
    spec: AdapterSpec, sites: list[_Site], index: int, gate_source: GateSource, rngs: nnx.Rngs
) -> list[nnx.Module]:
    """One new adapter module per site (r1 modules of a slot share one SharedBottleneck)."""
    if spec.kind == "lora":
        return [
            LoRABranch(*site.shape, spec.rank, spec.lora_scale, index, gate_source, rngs=rngs)
            for site in sites
        ]
    if spec.kind == "r2":
        return [
            BottleneckAdapter(site.shape[0], spec.bottleneck, index, gate_source, rngs=rngs)
            for site in sites
        ]
    widths = {site.shape[0] for site in sites}
    if len(widths) != 1:
        raise ValueError(f"Round-1 adapters share weights across layers of one width: {widths}.")
    width = widths.pop()
    shared = {slot: SharedBottleneck(width, spec.bottleneck, rngs=rngs) for slot in POSITIONS}
    return [FactorisedAdapter(shared[site.key], index, gate_source) for site in sites]


def adapter_indices(model: nnx.Module) -> list[int]:
    """Indices of the adapters injected into `model`, ascending."""
    return sorted({m.index for _, m in nnx.iter_modules(model) if isinstance(m, _ALL_ADAPTERS)})


def inject_adapter(
    model: nnx.Module, spec: AdapterSpec, *, rngs: nnx.Rngs, gate_source: GateSource
) -> int:
    """Adds one zero-initialised adapter to `model` in place.

    Args:
        model: The model (e.g. the U-ViT); see the module docstring for what is found.
        spec: Kind and sizes.
        rngs: Initialisation randomness (Wd / LoRA A).
        gate_source: Returns the [B, K] gate of the forward in progress, or None for all
            on (callers pass `muse.transformer.current_adapter_gate`).

    Returns:
        The adapter index k: its gate column and the `index` argument of the functions
        below.
    """
    indices = adapter_indices(model)
    index = indices[-1] + 1 if indices else 0
    sites = _sites(model, spec)
    for site, module in zip(sites, _build(spec, sites, index, gate_source, rngs), strict=True):
        if spec.kind != "lora":
            getattr(site.parent, site.key).append(module)
            continue
        layer = _get_child(site.parent, site.key)
        if not isinstance(layer, LoRALinear):
            layer = LoRALinear(layer)
            _set_child(site.parent, site.key, layer)
        layer.loras.append(module)
    return index


def count_parameters(model: nnx.Module, spec: AdapterSpec) -> int:
    """Adapter weights `spec` would add to `model`, from shapes only.

    Args:
        model: The model; an abstract one from `nnx.eval_shape` works (nothing of the
            model is read but its structure and layer sizes).
        spec: Kind and sizes.

    Returns:
        The count (shared r1 matrices once).
    """
    sites = _sites(model, spec)
    built = nnx.eval_shape(lambda: nnx.List(_build(spec, sites, 0, lambda: None, nnx.Rngs(0))))
    leaves = nnx.to_flat_state(nnx.state(built, AdapterParam))
    return sum(math.prod(variable.get_value().shape) for _, variable in leaves)


def _get_child(parent: nnx.Module, key: str | int) -> nnx.Module:
    return parent[key] if isinstance(parent, nnx.List) else getattr(parent, key)


def _set_child(parent: nnx.Module, key: str | int, child: nnx.Module) -> None:
    if isinstance(parent, nnx.List):
        parent[key] = child
    else:
        setattr(parent, key, child)


def _named_variables(
    model: nnx.Module, index: int, prefix: str
) -> dict[str, tuple[nnx.Variable, bool]]:
    """File name -> (variable, stored transposed) for every weight of adapter `index`."""
    modules = _modules(model)
    named: dict[str, tuple[nnx.Variable, bool]] = {}

    def add(name: str, variable: nnx.Variable, transposed: bool = False) -> None:
        if name in named and named[name][0] is not variable:
            raise ValueError(f"Two different adapter weights would be saved as {name!r}.")
        named[name] = (variable, transposed)

    for path, module in modules.items():
        name = _torch_name(path, modules)
        if _is_host(module):
            for slot in POSITIONS:
                for adapter in getattr(module, slot):
                    if not isinstance(adapter, _SLOT_ADAPTERS) or adapter.index != index:
                        continue
                    base = _join(prefix, name, slot)
                    if isinstance(adapter, BottleneckAdapter):
                        add(f"{base}.down", adapter.down)
                        add(f"{base}.up", adapter.up)
                    else:
                        add(f"{base}.down_offset", adapter.down_offset)
                        add(f"{base}.up_offset", adapter.up_offset)
                        add(_join(prefix, slot, "down"), adapter.shared.down)
                        add(_join(prefix, slot, "up"), adapter.shared.up)
        elif isinstance(module, LoRALinear):
            for lora in module.loras:
                if lora.index == index:
                    add(_join(prefix, name, "lora_A.weight"), lora.lora_a, transposed=True)
                    add(_join(prefix, name, "lora_B.weight"), lora.lora_b, transposed=True)
    if not named:
        raise KeyError(
            f"The model has no adapter {index}; injected: {adapter_indices(model) or 'none'}."
        )
    return named


def adapter_state_dict(
    model: nnx.Module, index: int, prefix: str = "transformer"
) -> dict[str, np.ndarray]:
    """The weights of adapter `index` as `{name: array}` (names in the module docstring).

    Args:
        model: The model holding the adapter.
        index: The adapter index returned by `inject_adapter`.
        prefix: First name component (the pipeline component, "transformer" for PEFT);
            "" for none.

    Returns:
        Float32 numpy arrays; LoRA weights in PyTorch layout ([r, in] and [out, r]).
    """
    out = {}
    for name, (variable, transposed) in _named_variables(model, index, prefix).items():
        value = np.asarray(variable.get_value())
        out[name] = np.ascontiguousarray(value.T if transposed else value)
    return out


def load_adapter_state(
    model: nnx.Module,
    index: int,
    tensors: Mapping[str, np.ndarray],
    prefix: str = "transformer",
) -> None:
    """Writes `tensors` (as from `adapter_state_dict`) into adapter `index`, strictly.

    Inject an adapter with the same spec first; its weights are then overwritten.

    Raises:
        AdapterStateError: naming every missing, unexpected and misshapen tensor.
    """
    named = _named_variables(model, index, prefix)
    missing = sorted(set(named) - set(tensors))
    unexpected = sorted(set(tensors) - set(named))
    misshapen = []
    for name in sorted(set(named) & set(tensors)):
        variable, transposed = named[name]
        want = tuple(variable.get_value().shape)
        want = want[::-1] if transposed else want
        if tuple(np.shape(tensors[name])) != want:
            misshapen.append(f"{name}: file {tuple(np.shape(tensors[name]))}, adapter {want}")
    if missing or unexpected or misshapen:
        lines = [f"The adapter weights do not fit adapter {index} of the model:"]
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshapen),
        ):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" * (len(keys) > 10))
                lines.append(f"  {label} ({len(keys)}): {shown}")
        lines.append("Inject an adapter with the spec the weights were saved with.")
        raise AdapterStateError("\n".join(lines))
    for name, (variable, transposed) in named.items():
        value = np.asarray(tensors[name])
        value = value.T if transposed else value
        variable.set_value(jnp.asarray(value, dtype=variable.get_value().dtype))


def remove_adapters(model: nnx.Module, index: int | None = None) -> None:
    """Takes adapters out of `model` in place, restoring the original modules.

    Args:
        model: The model.
        index: Remove only this adapter (others keep their indices and gate columns);
            None removes all.
    """

    def chosen(module: nnx.Module) -> bool:
        return index is None or module.index == index

    modules = _modules(model)
    for path, module in modules.items():
        if _is_host(module):
            for slot in POSITIONS:
                entries = getattr(module, slot)
                for position in reversed(range(len(entries))):
                    if isinstance(entries[position], _SLOT_ADAPTERS) and chosen(entries[position]):
                        del entries[position]
        elif isinstance(module, LoRALinear):
            for position in reversed(range(len(module.loras))):
                if chosen(module.loras[position]):
                    del module.loras[position]
            if not len(module.loras):
                _set_child(modules[path[:-1]], path[-1], module.base_layer)
