"""Attaching adapter files to a loaded base and sampling with StyleDrop guidance.

`attach_adapter(pipe, path)` checks the file was trained on this base (content hash),
injects an adapter of the recorded kind and loads its weights; it returns the adapter's
gate index. `generate_styled(...)` samples with Eq. 4, or Eqs. 5-6 when a subject
adapter is attached as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flax import nnx

from adapters import adapter_indices, inject_adapter, load_adapter_state
from adapters.files import AdapterFile, read_adapter_file
from muse import checkpoint as model_checkpoint
from muse.pipeline import Branch, Pipeline
from muse.sampling import DecodeConfig
from muse.transformer import current_adapter_gate
from styledrop.guidance import (
    GuidanceScales,
    model_guidance,
    style_subject_branches,
    styledrop_branches,
)
from styledrop.terms import DEFAULT_GAMMA, with_descriptor, without_descriptor


@dataclass(frozen=True)
class AttachedAdapter:
    """An adapter file loaded into a pipeline.

    Attributes:
        index: Its gate index in the transformer.
        file: The file's spec, tensors and metadata.
    """

    index: int
    file: AdapterFile

    @property
    def descriptor(self) -> str:
        """The style descriptor it was trained with ("" for subject adapters without one)."""
        return str(self.file.metadata.get("descriptor", ""))


def attach_adapter(pipe: Pipeline, path: str | Path) -> AttachedAdapter:
    """Loads an adapter file into `pipe.transformer`.

    Raises:
        AdapterFileError: if the file is not an adapter or was trained on another base.
    """
    expected = model_checkpoint.base_model_hash(pipe.path) if pipe.path else None
    file = read_adapter_file(path, expected_base_hash=expected)
    index = inject_adapter(
        pipe.transformer, file.spec, rngs=nnx.Rngs(0), gate_source=current_adapter_gate
    )
    load_adapter_state(pipe.transformer, index, file.tensors)
    return AttachedAdapter(index, file)


def generate_styled(
    pipe: Pipeline,
    style: AttachedAdapter,
    prompts: Sequence[str],
    *,
    num_images_per_prompt: int = 1,
    seed: int = 0,
    scales: GuidanceScales | None = None,
    negative_prompt: str = "",
    subject: AttachedAdapter | None = None,
    gamma: float = DEFAULT_GAMMA,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    temperature: float | tuple[float, float] | None = None,
    token_temperature: float | None = None,
    num_steps: int | None = None,
    decoding: str | None = None,
) -> np.ndarray:
    """Samples prompts in the adapter's style with StyleDrop guidance.

    Args:
        pipe: The base with the adapter(s) attached.
        style: The style adapter; its descriptor is appended to prompts that lack it.
        prompts: Content prompts (with or without the descriptor).
        num_images_per_prompt: Images per prompt.
        seed: Randomness.
        scales: lambda_A / lambda_B (default: `model_guidance` of the base: the model's
            lambda_B, else the paper's 5; lambda_A 1).
        negative_prompt: The negative branch's prompt.
        subject: Optional subject adapter for style + subject composition.
        gamma: Subject weight for the composition.
        batch_size: Images per compiled chunk.
        progress: Called with (images done, total).
        temperature: Gumbel (choice) temperature schedule of MaskGIT decoding, start or
            (start, end) (default: the model's; `muse.schedule.temperatures`).
        token_temperature: Softmax temperature of the token draw (default: the model's).
        num_steps: Decoding steps (default: the model's).
        decoding: Re-masking rule, "maskgit" or "amused" (default: the model's).

    Returns:
        [len(prompts) * num_images_per_prompt, H, W, 3] float32 images in [0, 1].
    """
    scales = scales or model_guidance(pipe.config.sampling)
    descriptor = style.descriptor
    styled = [with_descriptor(p, descriptor) for p in prompts for _ in range(num_images_per_prompt)]
    negatives = [negative_prompt] * len(styled)
    count = max(adapter_indices(pipe.transformer)) + 1  # gate width: every adapter held
    if subject is None:
        branches = styledrop_branches(
            styled, negatives, scales, adapter_index=style.index, num_adapters=count
        )
    else:
        content = [without_descriptor(p, descriptor) for p in styled]
        branches = style_subject_branches(
            styled, content, negatives, gamma, scales,
            style_index=style.index, subject_index=subject.index, num_adapters=count,
        )  # fmt: skip
    cfg = pipe.decode_config(
        temperature=temperature, token_temperature=token_temperature, num_steps=num_steps,
        style=decoding,
    )  # fmt: skip
    ids = styled_tokens(
        pipe, branches, styled, descriptor, negatives, scales, subject=subject,
        num_adapters=count, seed=seed, decode_config=cfg, batch_size=batch_size,
        progress=progress,
    )  # fmt: skip
    return pipe.decode_tokens(ids, batch_size=batch_size)


def styled_tokens(
    pipe: Pipeline,
    branches: Sequence[Branch],
    styled: Sequence[str],
    descriptor: str,
    negatives: Sequence[str],
    scales: GuidanceScales,
    *,
    subject: AttachedAdapter | None = None,
    num_adapters: int,
    seed: int,
    decode_config: DecodeConfig | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Decodes StyleDrop guidance branches, content first when `scales` asks for it.

    Args:
        pipe: The base with the adapter(s) attached.
        branches: Eq. 4 (or Eqs. 5-6) branches over the `styled` prompts.
        styled: The prompts with the style descriptor, one per image.
        descriptor: The style descriptor (removed for the content-first steps).
        negatives: The negative prompts, one per image.
        scales: The guidance scales; `content_first` says how many steps come first.
        subject: The composed subject adapter, if any (it lays the subject out).
        num_adapters: Width of the adapter gate (every adapter the model holds).
        seed: Randomness.
        decode_config: Decoding settings (default: the model's).
        batch_size: Images per compiled chunk.
        progress: Called with (images done, total).

    Returns:
        [N, h, w] int32 token ids.
    """
    cfg = decode_config or pipe.decode_config()
    layout_steps = scales.layout_steps(cfg.num_steps)
    layout = []
    if layout_steps:
        layout = content_branches(
            pipe, styled, descriptor, negatives, scales, subject, num_adapters
        )
    return pipe.sample_tokens(
        branches, seed=seed, decode_config=cfg, batch_size=batch_size, progress=progress,
        layout=layout, layout_steps=layout_steps,
    )  # fmt: skip


def content_branches(
    pipe: Pipeline,
    styled: Sequence[str],
    descriptor: str,
    negatives: Sequence[str],
    scales: GuidanceScales,
    subject: AttachedAdapter | None,
    num_adapters: int,
) -> list[Branch]:
    """The branches of the content-first steps (`GuidanceScales.content_first`).

    They draw the prompts without the style descriptor: with the base at its own
    classifier-free scale, or with a subject adapter, its Eq. 4 term (the paper's subject
    term of Eqs. 5-6), so a subject only the adapter knows is laid out too.
    """
    content = [without_descriptor(p, descriptor) for p in styled]
    if subject is None:
        scale = pipe.config.sampling.guidance_scale
        base = (0.0,) * num_adapters  # every adapter off: the frozen base
        return [Branch(tuple(negatives), 1.0 - scale, base), Branch(tuple(content), scale, base)]
    return styledrop_branches(
        content, negatives, scales, adapter_index=subject.index, num_adapters=num_adapters
    )
