"""Growing a trained base: new layers, and a new position embedding, begin as the identity.

The U-ViT's transformer layers are residual: each adds the outputs of self-attention,
cross-attention and the feed-forward to its input. With those three output projections
at zero a layer returns its input unchanged, so a base of N layers loaded into a model
of M > N layers, with the M - N new layers spread between the old ones and their output
projections zeroed, computes exactly what the N-layer base computed. Training then
starts from the shallower base's quality with the deeper base's capacity (the new
layers' output projections get gradients at once; their other weights keep the model's
random init and learn once those projections leave zero).

A base trained without a position embedding (`TransformerConfig.position_embedding`)
loads into a model with one the same way: the embedding stays at its zero init, so the
model computes what the file's base computed until training moves it.

Every other tensor must match the model's shape exactly; a base is never made shallower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from muse import weights
from muse.safetensors_file import SafetensorsFile
from muse.transformer import UVit2D

LAYER_PREFIX = "transformer_layers."
# Output projections of a layer's residual branches (attn1, attn2, ff): zero makes it the identity.
RESIDUAL_OUTPUTS = (
    "attn1.to_out.0.kernel",
    "attn1.to_out.0.bias",
    "attn2.to_out.0.kernel",
    "attn2.to_out.0.bias",
    "ff.out.kernel",
    "ff.out.bias",
)
# Parameters a base may gain over its file; the model's init for them (zero) adds nothing.
ADDABLE_PARAMS = ("position_embedding",)


def split_layer_name(name: str) -> tuple[int | None, str]:
    """Splits a parameter name into its transformer layer and the rest.

    "transformer_layers.3.ff.out.kernel" -> (3, "ff.out.kernel"); other names -> (None, name).
    """
    if not name.startswith(LAYER_PREFIX):
        return None, name
    index, _, rest = name[len(LAYER_PREFIX) :].partition(".")
    return int(index), rest


def layer_count(names) -> int:
    """Number of transformer layers among parameter names (0 when there are none)."""
    indices = [split_layer_name(name)[0] for name in names]
    return 1 + max((i for i in indices if i is not None), default=-1)


def layer_order(old: int, new: int) -> list[int | None]:
    """Which old layer each of the `new` layers starts from (None: a new identity layer).

    The new layers are spread evenly between the old ones, after every few of them:
    6 -> 9 gives old 0, 1, new, old 2, 3, new, old 4, 5, new.

    Raises:
        ValueError: `new` is smaller than `old`, or `old` is not positive.
    """
    if old < 1 or new < old:
        raise ValueError(f"Cannot start {new} layers from {old}: a base can only be deepened.")
    added = new - old
    order: list[int | None] = []
    for index in range(old):
        order.append(index)
        inserted_so_far = order.count(None)
        order.extend([None] * ((index + 1) * added // old - inserted_so_far))
    return order


def load_grown(model: UVit2D, path: str | Path) -> dict:
    """Loads a base's `transformer.safetensors` into a model with as many layers or more.

    Args:
        model: The U-ViT to fill (its new layers keep their init but for the output
            projections of their residual branches, which are set to zero; a position
            embedding the file lacks keeps its zero init).
        path: Weights written by `muse.weights.save_params` for a base of the same
            configuration but, possibly, fewer transformer layers or no position embedding.

    Returns:
        {} when the file fits the model as it is (a plain load); otherwise what was added:
        {"deepened_from_layers": N, "inserted_layers": [indices of the new identity layers
        in the model]} when layers were, {"added_params": [names]} when a position
        embedding was.

    Raises:
        muse.weights.WeightsError: the file has more layers than the model, or any other
            tensor is missing, unexpected or of the wrong shape.
    """
    path = Path(path)
    model_layers = len(model.transformer_layers)
    with SafetensorsFile(path) as tensors:
        shapes = tensors.shapes()
    file_layers = layer_count(shapes)
    current = weights.flat_params(model)
    added = [name for name in ADDABLE_PARAMS if name in current and name not in shapes]
    if file_layers == model_layers and not added:
        weights.load_params(model, path)
        return {}
    with SafetensorsFile(path) as tensors:
        if file_layers > model_layers:
            raise weights.WeightsError(
                f"{path.name} holds a base of {file_layers} transformer layers and the model"
                f" has {model_layers}; a base can be deepened but not made shallower: pass"
                f" --layers {file_layers} or more."
            )
        order = layer_order(file_layers, model_layers)
        sources: dict[str, str] = {}  # model name -> file name
        params: dict[str, np.ndarray] = {}
        for name, value in current.items():
            index, rest = split_layer_name(name)
            if index is not None and order[index] is None:
                params[name] = np.zeros_like(value) if rest in RESIDUAL_OUTPUTS else value
            elif name in added:
                params[name] = np.zeros_like(value)
            elif index is None:
                sources[name] = name
            else:
                sources[name] = f"{LAYER_PREFIX}{order[index]}.{rest}"
        missing = sorted(set(sources.values()) - set(shapes))
        unexpected = sorted(set(shapes) - set(sources.values()))
        if missing or unexpected:
            raise weights.WeightsError(
                f"{path.name} does not fit the model beyond its layer count: missing"
                f" {missing[:10]}, unexpected {unexpected[:10]}."
            )
        for name, source in sources.items():
            params[name] = tensors.read(source)
    weights.assign(model, params, path.name)
    summary: dict = {"added_params": added} if added else {}
    if file_layers < model_layers:
        summary["deepened_from_layers"] = file_layers
        summary["inserted_layers"] = [i for i, source in enumerate(order) if source is None]
    return summary
