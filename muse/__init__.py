"""Muse / aMUSEd in JAX + Flax NNX: U-ViT, VQ tokenizer, text encoder, sampler, conversion.

`muse.load(path)` returns a `muse.pipeline.Pipeline`; submodules import lazily so that
`muse.config` stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from muse.pipeline import Pipeline


def load(path, dtype: str = "float32") -> Pipeline:
    """Loads a converted model folder; see `muse.pipeline.load`."""
    from muse.pipeline import load as _load

    return _load(path, dtype=dtype)
