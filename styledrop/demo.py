"""The StyleDrop demo: one style image in, a grid of other subjects in that style out.

It runs the paper's round 1 on the embedded zoo, offline and on a CPU, in minutes:
1. the base draws the demo subjects with the style descriptor only (the baseline);
2. a round-1 adapter is fitted to the style image (shipped with the package: a Symbola
   line-art house, a style none of the zoo's models saw in training);
3. the adapted model draws the same subjects with StyleDrop guidance (Eq. 4);
4. the judge CLIP scores both sets (style score against the reference, text score
   against the content prompt, and on the embedded zoo how often it names each image's
   subject) and an HTML report shows them side by side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from adapters import AdapterSpec, adapter_indices
from adapters.files import read_adapter_file
from feedback.html_report import HtmlReport
from feedback.scorer import ClipScorer
from styledrop.adapted import AttachedAdapter, generate_styled
from styledrop.dataset import StyleExample
from styledrop.finetune import FinetuneConfig, Progress, finetune
from styledrop.guidance import model_guidance
from styledrop.images import make_grid, save_image
from styledrop.inputs import load_images
from styledrop.terms import with_descriptor
from styledrop.zoo.embedded import JUDGE_DIR, embedded_base, is_emoji_world
from styledrop.zoo.naming import named_flags
from styledrop.zoo.vocabulary import subject_of_phrase

DEMO_STYLE_IMAGE = "demo_style_house_line_art.png"
DEMO_SUBJECTS = (
    "a cat", "a penguin", "a tree", "a rocket", "a teapot", "an owl", "a banana", "a car",
)  # fmt: skip


def demo_style_image() -> Path:
    """The style image shipped with the package (a line-art house, 64x64)."""
    return Path(str(resources.files("styledrop") / "data" / DEMO_STYLE_IMAGE))


@dataclass(frozen=True)
class DemoConfig:
    """What the demo does.

    Attributes:
        caption: Content caption of the style image.
        descriptor: Style descriptor appended to every prompt.
        prompts: Content prompts drawn in the style.
        images_per_prompt: Samples per prompt.
        steps: Fine-tuning steps.
        learning_rate: Adapter learning rate (None: the kind's default).
        adapter: Adapter kind ("r1" is the paper's round 1).
        seed: Seed of fine-tuning and sampling.
        lambda_a: StyleDrop guidance towards the style (Eq. 4).
        lambda_b: StyleDrop classifier-free guidance (Eq. 4; None: the base's, else the
            paper's 5; the summary records the value used).
        content_first: The fraction of decoding steps the adapted draws give the content
            prompt alone (`styledrop.guidance.GuidanceScales`; None: the base's, else 0;
            the summary records the value used).
    """

    caption: str = "a house"
    descriptor: str = "in blue ink line drawing style"
    prompts: tuple[str, ...] = DEMO_SUBJECTS
    images_per_prompt: int = 2
    steps: int = 300
    learning_rate: float | None = 1e-3
    adapter: str = "r1"
    seed: int = 0
    lambda_a: float = 1.0
    lambda_b: float | None = None
    content_first: float | None = None


def run_demo(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    *,
    base: str | Path | None = None,
    style_image: str | Path | None = None,
    on_step: Callable[[Progress], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Runs the demo; writes the adapter, grids, `summary.json` and `report.html`.

    Args:
        out_dir: Output folder (a rerun resumes the fine-tuning checkpoint).
        config: What to do.
        base: Model folder (default: the embedded zoo). Its `judge/` scores the images.
        style_image: The style image (default: the one shipped with the package).
        on_step: Receives fine-tuning progress after every step.
        on_stage: Receives a line when a stage starts.
        should_stop: Polled during fine-tuning; True ends the demo early (cancelled).

    Returns:
        The summary: scores of the baseline and the adapted model, paths, status.
    """
    import muse

    stage = on_stage or (lambda _line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = Path(base) if base is not None else embedded_base()
    style_path = Path(style_image) if style_image is not None else demo_style_image()
    reference = load_images([style_path])[0]
    stage(f"loading the base ({base.name})")
    pipe = muse.load(base)
    scales = model_guidance(
        pipe.config.sampling, config.lambda_a, config.lambda_b, config.content_first
    )
    config = replace(
        config, lambda_a=scales.lambda_a, lambda_b=scales.lambda_b,
        content_first=scales.content_first,
    )  # fmt: skip
    styled_prompts = [with_descriptor(p, config.descriptor) for p in config.prompts]

    stage("baseline: the base with the descriptor only")
    baseline = pipe.generate(
        styled_prompts, num_images_per_prompt=config.images_per_prompt, seed=config.seed
    )  # [P * n, H, W, 3] in [0, 1]

    stage("fine-tuning a round-1 adapter on the style image")
    finetune_config = FinetuneConfig(
        adapter=AdapterSpec(kind=config.adapter),
        steps=config.steps,
        learning_rate=config.learning_rate,
        seed=config.seed,
        checkpoint_every=100,
    )
    example = StyleExample(reference.pixels, config.caption, reference.name, reference.sha256)
    result = finetune(
        pipe, [example], config.descriptor, finetune_config, out_dir / "adapter",
        progress=on_step, should_stop=should_stop,
    )  # fmt: skip
    summary: dict = {"status": result.status, "steps": result.step, "config": asdict(config)}
    if result.adapter_path is None:
        return summary

    stage("sampling in the style with StyleDrop guidance")
    index = max(adapter_indices(pipe.transformer))
    attached = AttachedAdapter(index, read_adapter_file(result.adapter_path))
    styled = generate_styled(
        pipe, attached, list(config.prompts),
        num_images_per_prompt=config.images_per_prompt, seed=config.seed,
        scales=scales,
    )  # fmt: skip

    stage("scoring with the judge CLIP")
    scorer = ClipScorer.load(base / JUDGE_DIR)
    content = [p for p in config.prompts for _ in range(config.images_per_prompt)]
    references = reference.pixels[None]
    subjects = world_subjects(base, content)
    scores = {}
    for name, images in (("base + descriptor", baseline), ("round 1 (StyleDrop)", styled)):
        style = scorer.style_scores(images, references)
        text = scorer.text_scores(images, content)
        scores[name] = {"style": float(style.mean()), "text": float(text.mean())}
        if any(subject is not None for subject in subjects):
            named = named_flags(scorer, images, subjects)  # [P * n] 1/0, NaN: no subject
            scores[name]["subject_named"] = float(np.nanmean(named))
            per_prompt = named.reshape(len(config.prompts), config.images_per_prompt)
            scores[name]["named_per_prompt"] = {  # images of each prompt the judge names
                prompt: int(np.nansum(row))
                for prompt, row in zip(config.prompts, per_prompt, strict=True)
            }
    columns = config.images_per_prompt * 4
    save_image(make_grid(baseline, columns=columns), out_dir / "baseline.png")
    save_image(make_grid(styled, columns=columns), out_dir / "styled.png")
    summary |= {
        "adapter": str(result.adapter_path),
        "final_loss": result.final_loss,
        "scores": scores,
        "scorer": scorer.name,
    }
    _write_report(out_dir / "report.html", reference.pixels, baseline, styled, content, summary)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def world_subjects(base: Path, prompts: list[str]) -> list[str | None]:
    """Each prompt's world subject (None: not a subject's phrase, or not the zoo's world)."""
    if not is_emoji_world(base):
        return [None] * len(prompts)
    return [subject_of_phrase(prompt) for prompt in prompts]


def _content_first_note(fraction: float) -> str:
    if not fraction:
        return ""
    return (
        f", the first {fraction:.0%} of the decoding steps drawn from the content prompt"
        " alone (content first)"
    )


def _write_report(
    path: Path,
    reference: np.ndarray,
    baseline: np.ndarray,
    styled: np.ndarray,
    content: list[str],
    summary: dict,
) -> None:
    config = summary["config"]
    report = HtmlReport("StyleDrop demo", image_scale=2)
    report.paragraph(
        f"One style image, captioned {config['caption']!r}, descriptor"
        f" {config['descriptor']!r}; {summary['steps']} fine-tuning steps of a"
        f" {config['adapter']} adapter; StyleDrop guidance lambda_A {config['lambda_a']:g},"
        f" lambda_B {config['lambda_b']:g}{_content_first_note(config['content_first'])}."
        f" Scores are the judge CLIP's raw cosines ({summary['scorer']}), means over"
        f" {len(content)} images."
    )
    report.figures([reference], ["style reference"])
    named = all("subject_named" in s for s in summary["scores"].values())
    report.table(
        ["model", "style score", "text score", *(["subject named"] if named else [])],
        [
            [name, s["style"], s["text"], *([s["subject_named"]] if named else [])]
            for name, s in summary["scores"].items()
        ],
    )
    if named:
        report.paragraph(
            "Subject named: the fraction of images whose subject the judge names, zero-shot"
            " over the emoji world's whole vocabulary, as its prompt's subject."
        )
    report.heading("Round 1 adapter, StyleDrop guidance")
    report.figures(styled, content)
    report.heading("Base with the descriptor only")
    report.figures(baseline, content)
    report.write(path)
