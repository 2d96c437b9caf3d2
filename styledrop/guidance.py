"""StyleDrop guidance (paper Eq. 4) and style + subject mixing (Eqs. 5-6) as guidance branches.

Both are linear combinations of logits, so they are expressed as `muse.pipeline.Branch`
lists and evaluated in one batched forward per decoding step: each branch is a prompt
per image, a weight, and a gate saying which adapters are on in its rows.

Eq. 4, with G_a the adapted model, G the frozen base, t the prompt, n a negative prompt:

    l = G_a(t) + lambda_A [G_a(t) - G(t)] + lambda_B [G(t) - G(n)]
      = (1 + lambda_A) G_a(t) + (lambda_B - lambda_A) G(t) - lambda_B G(n)

Eqs. 5-6: l = (1 - gamma) l_style(t) + gamma l_subject(t'), where each term is Eq. 4 with
its own adapter and t' is the prompt without the style descriptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from muse.checkpoint import read_model_config
from muse.config import SamplingConfig
from muse.pipeline import Branch
from styledrop.terms import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, content_first_problem


@dataclass(frozen=True)
class GuidanceScales:
    """Scales of StyleDrop guidance.

    Attributes:
        lambda_a: Weight of (adapted - base) on the prompt: pushes towards the style.
        lambda_b: Weight of (base on prompt - base on negative): classifier-free guidance.
        content_first: The fraction of the decoding steps, in [0, 1), drawn first from the
            content prompt alone (the prompt without the style descriptor, by the base at
            its own classifier-free scale, or by a composed subject adapter's Eq. 4 term)
            before Eq. 4 draws the rest. Early steps lay
            the image out and late ones draw its detail, so the base keeps the subject and
            the adapter gives it the style. 0 is the paper's rule (Eq. 4 throughout).
    """

    lambda_a: float = DEFAULT_LAMBDA_A
    lambda_b: float = DEFAULT_LAMBDA_B
    content_first: float = 0.0

    def __post_init__(self):
        problem = content_first_problem(self.content_first)
        if problem:
            raise ValueError(problem[0].upper() + problem[1:] + ".")

    def layout_steps(self, num_steps: int) -> int:
        """How many of `num_steps` decoding steps draw the content prompt alone."""
        return round(self.content_first * num_steps)


def model_guidance(
    sampling: SamplingConfig,
    lambda_a: float | None = None,
    lambda_b: float | None = None,
    content_first: float | None = None,
) -> GuidanceScales:
    """The scales to sample one model with: those given, else the model's, else the paper's.

    A model may store its own lambda_B (`styledrop_lambda_b` in its sampling settings,
    `zoo assemble --styledrop-lambda-b`): on the 16x16 zoo the paper's 5 alone cost most
    of the subjects, and its own classifier-free strength (guidance 1.5, lambda_B 0.5)
    kept them (docs/experiments.md, "Guidance strength on the zoo").

    Args:
        sampling: The model's sampling settings (`Pipeline.config.sampling`).
        lambda_a: lambda_A, or None for the paper's 1.
        lambda_b: lambda_B, or None for the model's (the paper's 5 if it stores none).
        content_first: `GuidanceScales.content_first`, or None for the model's
            (`styledrop_content_first`; 0, the paper's rule, if it stores none).

    Returns:
        Concrete scales.
    """
    if lambda_b is None:
        lambda_b = sampling.styledrop_lambda_b
    if content_first is None:
        content_first = sampling.styledrop_content_first
    return GuidanceScales(
        DEFAULT_LAMBDA_A if lambda_a is None else lambda_a,
        DEFAULT_LAMBDA_B if lambda_b is None else lambda_b,
        content_first,
    )


def folder_guidance(
    base: str | Path,
    lambda_a: float | None = None,
    lambda_b: float | None = None,
    content_first: float | None = None,
) -> GuidanceScales:
    """`model_guidance` for a model folder, from its `model.json` (no weights load)."""
    return model_guidance(read_model_config(base).sampling, lambda_a, lambda_b, content_first)


def _gate(num_adapters: int, on: int | None) -> tuple[float, ...]:
    return tuple(1.0 if k == on else 0.0 for k in range(num_adapters))


def styledrop_branches(
    prompts: Sequence[str],
    negatives: Sequence[str],
    scales: GuidanceScales,
    *,
    adapter_index: int = 0,
    num_adapters: int = 1,
    weight: float = 1.0,
) -> list[Branch]:
    """Eq. 4 as three branches: adapted on prompt, base on prompt, base on negative.

    Args:
        prompts: One prompt per image (with the style descriptor).
        negatives: One negative prompt per image ("" for the unconditional branch).
        scales: lambda_A and lambda_B.
        adapter_index: Which injected adapter is G_a.
        num_adapters: How many adapters the model holds (width of the gate).
        weight: Overall weight of this guided term (used by style + subject mixing).

    Returns:
        Branches whose weighted sum of logits is `weight` times Eq. 4.
    """
    a, b = scales.lambda_a, scales.lambda_b
    adapted = _gate(num_adapters, adapter_index)
    base = _gate(num_adapters, None)
    return [
        Branch(tuple(prompts), weight * (1.0 + a), adapted),
        Branch(tuple(prompts), weight * (b - a), base),
        Branch(tuple(negatives), weight * (-b), base),
    ]


def style_subject_branches(
    style_prompts: Sequence[str],
    subject_prompts: Sequence[str],
    negatives: Sequence[str],
    gamma: float,
    style_scales: GuidanceScales,
    subject_scales: GuidanceScales | None = None,
    *,
    style_index: int = 0,
    subject_index: int = 1,
    num_adapters: int | None = None,
) -> list[Branch]:
    """Eqs. 5-6: (1 - gamma) x style-guided logits + gamma x subject-guided logits.

    Args:
        style_prompts: Prompts with the style descriptor, one per image.
        subject_prompts: The same prompts without the style descriptor.
        negatives: Negative prompts, one per image.
        gamma: Subject weight in [0, 1] (the paper uses 0.5-0.7).
        style_scales: Eq. 4 scales for the style term.
        subject_scales: Eq. 4 scales for the subject term (default: the style's).
        style_index: Gate index of the style adapter.
        subject_index: Gate index of the subject adapter.
        num_adapters: How many adapters the model holds (default: enough for both).

    Returns:
        Six branches (three per term).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}.")
    width = num_adapters or max(style_index, subject_index) + 1
    return styledrop_branches(
        style_prompts, negatives, style_scales,
        adapter_index=style_index, num_adapters=width, weight=1.0 - gamma,
    ) + styledrop_branches(
        subject_prompts, negatives, subject_scales or style_scales,
        adapter_index=subject_index, num_adapters=width, weight=gamma,
    )  # fmt: skip
