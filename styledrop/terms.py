"""The method's shared vocabulary: captions, adapter kinds, step and guidance defaults, descriptors.

StyleDrop prompts are "content + style descriptor" ("a house" + "in watercolor painting
style"). Every layer that speaks of them (the CLI, the job specs in `worker`, the app in
`ui`, the training and sampling code here) imports these names from this module, which
imports nothing but the standard library, so that none of them needs JAX to agree.
"""

from __future__ import annotations

DEFAULT_CAPTION = "an image"  # content caption of a style image given without one
# StyleDrop adapter kinds: "r1" and "r2" are the paper's rounds (bottleneck 4 and 32), "lora"
# low-rank updates of the attention projections. `adapters.params.KINDS` is the same tuple
# (that package imports Flax).
ADAPTER_KINDS = ("r1", "r2", "lora")
DEFAULT_STEPS = 1000  # optimizer steps per round (paper: 1000)

# StyleDrop guidance (paper Eq. 4): the paper fixes lambda_B = 5 and tunes lambda_A in [0, 2].
DEFAULT_LAMBDA_A = 1.0
DEFAULT_LAMBDA_B = 5.0
# Style + subject mixing (Eqs. 5-6): the subject adapter's weight gamma (paper: 0.5-0.7).
DEFAULT_GAMMA = 0.6
# MaskGIT's sampling temperatures (choice 4.5, token 1). The zoo samples nearer its modes
# (1 and 0.5); candidates for feedback are drawn at these, which vary more within a prompt,
# so that CLIP or a reviewer has more to choose from (docs/experiments.md).
VARIED_TEMPERATURE = 4.5
VARIED_TOKEN_TEMPERATURE = 1.0


def content_first_problem(value: float) -> str | None:
    """What is wrong with a content-first fraction (`GuidanceScales.content_first`), or None.

    It is the share of the decoding steps drawn from the content prompt alone, in [0, 1).
    """
    if 0.0 <= value < 1.0:
        return None
    return (
        f"content first is the fraction of the decoding steps drawn from the content prompt"
        f" alone: give a value in [0, 1) (0: the paper's rule), got {value:g}"
    )


def add_descriptor(content: str, descriptor: str) -> str:
    """Joins a content caption and a style descriptor: ("A house", "in watercolor style")."""
    content, descriptor = content.strip(), descriptor.strip()
    if not descriptor:
        return content
    if not content:
        return descriptor
    return f"{content} {descriptor}"


def with_descriptor(prompt: str, descriptor: str) -> str:
    """Appends the descriptor unless the prompt already contains it (case-insensitive)."""
    if descriptor and descriptor.lower() in prompt.lower():
        return prompt
    return add_descriptor(prompt, descriptor)


def without_descriptor(prompt: str, descriptor: str) -> str:
    """The prompt without the style descriptor (case-insensitive, first occurrence).

    This is the content a styled image is scored against and captioned with in round 2,
    and what the subject branch of style + subject sampling sees.

    Args:
        prompt: A prompt, with or without the descriptor.
        descriptor: The style descriptor ("" leaves the prompt as it is).

    Returns:
        The content part, whitespace normalised when the descriptor was removed.
    """
    if not descriptor:
        return prompt
    at = prompt.lower().find(descriptor.lower())
    if at < 0:
        return prompt
    return " ".join((prompt[:at] + prompt[at + len(descriptor) :]).split())
