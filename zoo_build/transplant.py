"""Starting a base from one of another tokenizer: its transformer carries over.

A base on a 16x16 grid whose layers run on the grid halved by a 2x2 convolution
(`zoo_transformer_config(downsample=True)`) runs its convolutional stages, its transformer
layers and its position embedding on an 8x8 grid of hidden states, as a base on an 8x8
grid without the halving does. With the same width, depth, heads and text encoder, all
tensors but six have the same name and shape in both: the token embedding and the output
projection (one row and one column per code of the tokenizer), and the kernels and norms
of the 2x2 down- and up-sampling convolutions the halving adds. Each cell of the halved
grid covers the same 8 x 8 pixels of a 64 px image as a token of the 8x8 tokenizer, so the
layers' knowledge of what to draw where from the text applies as it is; the new tensors
have to learn to translate the new tokenizer's codes into the hidden states the layers
expect, and back.

`load_transplanted` copies every tensor whose name and shape match, except those six, and
keeps the model's own init for the rest, so a base for a new tokenizer starts from the
trained layers of a base for the old one instead of from noise (`zoo train base --init BASE
--transplant`). The six never carry over, even where their shapes match (a 16x16 base of
another 16x16 tokenizer with as many codes): their rows speak the old tokenizer's codes.
"""

from __future__ import annotations

from pathlib import Path

from muse import weights
from muse.safetensors_file import SafetensorsFile
from muse.transformer import UVit2D
from zoo_build.grow import layer_count, split_layer_name

# A tensor whose first axis is the transformer's width.
_WIDTH_TENSOR = "transformer_layers.0.attn1.to_q.kernel"

# The tensors that belong to the tokenizer: the codes' embedding, the output projection onto
# the codes, and the 2x2 convolutions between the token grid and the halved grid.
TOKENIZER_TENSORS = (
    "down_block.downsample.conv.kernel",
    "down_block.downsample.norm.scale",
    "embed.embeddings.embedding",
    "mlm_layer.conv2.kernel",
    "up_block.upsample.conv.kernel",
    "up_block.upsample.norm.scale",
)


class TransplantError(ValueError):
    """A base cannot give its transformer to the model asked for."""


def check_transplantable(path: str | Path, width: int, layers: int) -> None:
    """Checks, from the file's header alone, that a base's transformer fits `width` x `layers`.

    Raises:
        TransplantError: the file is missing or unreadable, or its width or layer count
            differ (the message gives the options that fit).
    """
    path = Path(path)
    try:
        with SafetensorsFile(path) as tensors:
            shapes = tensors.shapes()
    except (OSError, ValueError) as error:
        raise TransplantError(f"Cannot read the base to transplant, {path}: {error}") from error
    found_width = int(shapes[_WIDTH_TENSOR][0]) if _WIDTH_TENSOR in shapes else None
    found = (found_width, layer_count(shapes))
    if found != (width, layers):
        raise TransplantError(
            f"{path} holds a transformer of width {found[0]} and {found[1]} layers; a"
            f" transplant keeps it: pass --base-width {found[0]} --base-layers {found[1]}."
        )


def load_transplanted(model: UVit2D, path: str | Path) -> dict:
    """Loads the tensors of a base's weights file that fit `model`; the rest keep their init.

    The tokenizer's tensors (`TOKENIZER_TENSORS`) always keep their init: the file's were
    trained on another tokenizer's codes.

    Args:
        model: The U-ViT to fill, for another tokenizer (its codebook or token grid may
            differ from the file's base) but with the same transformer: width, layer
            count, heads and text conditioning.
        path: Weights written by `muse.weights.save_params` (float16 files load into
            float32 parameters).

    Returns:
        {"transplanted_params": how many tensors were copied, "kept_init": the names of
        the model's tensors that kept their init, "unused_from_file": the names of the
        file's tensors that were not copied}.

    Raises:
        muse.weights.WeightsError: a transformer layer's tensor (or the position
            embedding, when both have one) is missing from the file or of another shape:
            the transformer differs and nothing would carry over.
    """
    path = Path(path)
    current = weights.flat_params(model)
    with SafetensorsFile(path) as tensors:
        shapes = {name: tuple(shape) for name, shape in tensors.shapes().items()}
        fits = {
            name for name, value in current.items()
            if shapes.get(name) == value.shape and name not in TOKENIZER_TENSORS
        }  # fmt: skip
        needed = [
            name for name in current
            if split_layer_name(name)[0] is not None
            or (name == "position_embedding" and name in shapes)
        ]  # fmt: skip
        misfits = [name for name in needed if name not in fits]
        if misfits:
            shown = [
                f"{name}: file {shapes.get(name, 'missing')}, model {current[name].shape}"
                for name in misfits[:5]
            ]
            raise weights.WeightsError(
                f"{path.name} has another transformer than the model ({len(misfits)} tensors"
                f" differ: {'; '.join(shown)}). A transplant keeps the transformer: pass the"
                " file's --width and --layers, and a downsampled grid whose half is the file's"
                " grid."
            )
        params = {
            name: tensors.read(name) if name in fits else value for name, value in current.items()
        }
    weights.assign(model, params, path.name)
    return {
        "transplanted_params": len(fits),
        "kept_init": sorted(set(current) - fits),
        "unused_from_file": sorted(set(shapes) - fits),
    }
