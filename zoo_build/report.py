"""`styledrop zoo report`: how good the embedded zoo is, as figures and as pictures.

The questions, each answered on data the model in question never trained on:
- `vq_psnr`: can the VQ tokenizer reconstruct renders of the "eval" split?
- `judge_top1_real`: does the judge name the subject of "eval" renders (fresh
  augmentation draws), zero-shot over the whole vocabulary?
- `judge_top1_heldout_style`: the same on Symbola line art, a style no model saw.
- `t2i_top1`: does the base draw what it is asked? It generates "a <subject>" for
  evenly spaced subjects of the vocabulary, and the judge names each image.
  `judge_top1_vq_reconstruction` (the judge on the VQ's reconstructions of the "eval"
  renders) is what the base could reach at best through this tokenizer, and
  `judge_top1_vq_canonical` (the same on the plain canonical renders the base trains on)
  what it reaches by drawing each subject's plain look exactly.
- `t2i_top1_descriptor`: the same prompts with a style descriptor appended that no
  training caption contains (`zoo_build.descriptors.HELDOUT_DESCRIPTORS`, one per subject
  in turn): does an unknown modifier leave the content in place? `t2i_descriptor_ratio`
  is it over `t2i_top1` (target: at least 0.9), and `t2i_top1_by_descriptor` splits it by
  descriptor (about one in 20 prompts each).
- `t2i_top1_world_style`: the same prompts with one of the world's own training styles
  appended instead ("a penguin in greyscale", "a fox on a blue background"; one style per
  subject in turn, `world_style_prompts`): can the base draw a subject in a style it
  trained on, a combination it may never have seen? `t2i_world_style_ratio` is it over
  `t2i_top1`, and `t2i_top1_by_world_style_kind` splits it by the style's stage ("fg":
  the subject's look, e.g. greyscale or an outline; "bg": the background; "post": the
  whole picture, a pencil sketch or a frame).
- `recognisability_judge_prompts`: of the 24 everyday prompts of the recognisability check
  (`zoo_build.recognisability`), how many the judge names in at least 3 of 4 samples. The
  grid is also saved as a PNG beside the report, for a person to look at.
The figures go to stdout as one JSON line and, with image grids, into an HTML report.
With a JSON path, the report also writes which subject the judge named in each drawn
image (`REPORT_RECORD_FORMAT`), so that two zoos scored on the same subjects can be
compared subject by subject (`zoo_build.compare`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from feedback.html_report import HtmlReport
from feedback.scorer import ClipScorer
from styledrop.images import make_grid, save_image
from styledrop.zoo.draws import is_plain_canonical
from styledrop.zoo.embedded import JUDGE_DIR, MANIFEST
from styledrop.zoo.styles import LINE_ART
from zoo_build.dataset import load_dataset
from zoo_build.descriptors import HELDOUT_DESCRIPTORS, world_style_prompts
from zoo_build.recognisability import (
    RECOGNISABILITY_PROMPTS,
    SAMPLE_PROMPTS,
    SAMPLES_PER_PROMPT,
    named_by_judge,
)
from zoo_build.vq_metrics import reconstruct_images, reconstruction_scores
from zoo_build.zero_shot import judge_top1, load_vocabulary

DEFAULT_T2I_SUBJECTS = 128

# Version tag of the per-subject record `zoo_report` writes with `json_path`.
REPORT_RECORD_FORMAT = "styledrop-zoo-report-1"


def spread(items: Sequence, count: int | None) -> list:
    """`count` items spread evenly over `items` (all of them when count is None or larger)."""
    if count is None or count >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def _captions(truth: Sequence[str], predicted: Sequence[str]) -> list[str]:
    return [t if t == p else f"{t} (judge: {p})" for t, p in zip(truth, predicted, strict=True)]


def _prompt_captions(
    prompts: Sequence[str], truth: Sequence[str], predicted: Sequence[str]
) -> list[str]:
    """Each prompt, with the judge's guess where it is not the prompt's subject."""
    return [
        prompt if t == p else f"{prompt} (judge: {p})"
        for prompt, t, p in zip(prompts, truth, predicted, strict=True)
    ]


def _ratio(value: float, base: float) -> float:
    """Value / base, NaN where base is 0."""
    return value / base if base > 0 else float("nan")


def top1_by_descriptor(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Top-1 of the descriptor draws per held-out descriptor (prompt i has descriptor i % 20).

    Args:
        truth: The subject id of each prompt, in the order drawn.
        predicted: The judge's guess for each.

    Returns:
        descriptor -> top-1 over the prompts that had it (about n / 20 each).
    """
    groups = [HELDOUT_DESCRIPTORS[i % len(HELDOUT_DESCRIPTORS)] for i in range(len(truth))]
    return top1_by_group(groups, truth, predicted)


def top1_by_group(groups: Sequence[str], truth: Sequence[str], predicted: Sequence[str]) -> dict:
    """Top-1 within each group of prompts.

    Args:
        groups: The group of each prompt (e.g. its style's stage).
        truth: The subject id of each prompt.
        predicted: The judge's guess for each.

    Returns:
        group -> top-1 over its prompts, in first-seen order.
    """
    hits: dict[str, list[bool]] = {}
    for group, t, p in zip(groups, truth, predicted, strict=True):
        hits.setdefault(group, []).append(t == p)
    return {group: float(np.mean(values)) for group, values in hits.items()}


def zoo_report(
    zoo: str | Path,
    data_dir: str | Path,
    html_path: str | Path,
    t2i_subjects: int | None = DEFAULT_T2I_SUBJECTS,
    seed: int = 0,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
    descriptors: bool = True,
    recognisability: bool = True,
    json_path: str | Path | None = None,
) -> dict:
    """Scores a zoo folder and writes the HTML report.

    Args:
        zoo: The zoo folder (native model folder with `judge/`).
        data_dir: An emoji-world dataset built with the zoo's recipe.
        html_path: Where to write the report.
        t2i_subjects: How many subjects the base draws (evenly spread; None: all).
        seed: Generation seed.
        batch_size: Images per compiled generation batch.
        log: Receives one line per stage.
        descriptors: Also draw the prompts with a held-out style descriptor appended, and
            again with one of the world's training styles appended.
        recognisability: Also draw the recognisability check's prompts (4 samples each),
            saved as `<report name>-recognisability.png` beside the report.
        json_path: Also write the figures and, per drawn subject, whether the judge named
            it (`REPORT_RECORD_FORMAT`; what `zoo_build.compare` reads).

    Returns:
        The figures (also written into the report).
    """
    import muse

    zoo, data_dir = Path(zoo), Path(data_dir)
    report = HtmlReport("Emoji-world zoo report")
    subjects = load_vocabulary(data_dir)
    figures: dict = {"vocabulary_size": len(subjects)}

    log("VQ reconstruction on the eval split")
    pipe = muse.load(zoo)
    eval_images, eval_records = load_dataset(data_dir, split="eval")
    reconstructed, codes = reconstruct_images(pipe.vq, eval_images)  # [N, H, W, 3] in [0, 1]
    vq = reconstruction_scores(eval_images, reconstructed, codes, pipe.vq.config.num_vq_embeddings)
    figures |= {"vq_psnr": vq["psnr"], "vq_psnr_global": vq["psnr_global"]}
    figures["vq_codebook_usage"] = vq["codebook_usage"]
    reconstructed = np.round(reconstructed * 255).astype(np.uint8)
    shown = spread(range(len(eval_images)), 16)

    log("judge zero-shot top-1")
    scorer = ClipScorer.load(zoo / JUDGE_DIR)
    truth = [r["subject"] for r in eval_records]
    figures["judge_top1_real"], eval_pred = judge_top1(scorer, eval_images, truth, subjects)
    figures["judge_top1_vq_reconstruction"], _ = judge_top1(scorer, reconstructed, truth, subjects)
    base_images, base_records = load_dataset(data_dir, split="base")
    plain = [row for row, record in enumerate(base_records) if is_plain_canonical(record)]
    plain_rebuilt, _ = reconstruct_images(pipe.vq, base_images[plain])  # [n, H, W, 3] in [0, 1]
    figures["judge_top1_vq_canonical"], _ = judge_top1(
        scorer, np.round(plain_rebuilt * 255).astype(np.uint8),
        [base_records[row]["subject"] for row in plain], subjects,
    )  # fmt: skip
    held_images, held_records = load_dataset(data_dir, heldout=True)
    by_style, held_examples = {}, []
    for style in dict.fromkeys(r["style"] for r in held_records):
        rows = [i for i, r in enumerate(held_records) if r["style"] == style]
        names = [held_records[i]["subject"] for i in rows]
        by_style[style], predicted = judge_top1(scorer, held_images[rows], names, subjects)
        picks = spread(range(len(rows)), 6)
        held_examples.append(
            (style, held_images[[rows[i] for i in picks]], [names[i] for i in picks],
             [predicted[i] for i in picks])
        )  # fmt: skip
    figures["judge_top1_heldout_style"] = by_style.get(LINE_ART.name, float("nan"))
    figures["judge_top1_by_heldout_style"] = by_style

    chosen = spread(subjects, t2i_subjects)
    log(f"base text-to-image on {len(chosen)} subjects")
    began = time.perf_counter()
    generated = pipe.generate(
        [s.phrase() for s in chosen], seed=seed, batch_size=batch_size
    )  # [n, H, W, 3] in [0, 1]
    seconds = time.perf_counter() - began
    images_u8 = np.round(generated * 255).astype(np.uint8)
    ids = [s.id for s in chosen]
    figures["t2i_top1"], t2i_pred = judge_top1(scorer, images_u8, ids, subjects)
    figures["t2i_subjects"] = len(chosen)
    figures["t2i_seconds_per_image"] = seconds / len(chosen)
    named = {"t2i": _hits(ids, t2i_pred)}
    if descriptors:
        log(f"base text-to-image with {len(HELDOUT_DESCRIPTORS)} held-out descriptors")
        described = [
            f"{s.phrase()} {HELDOUT_DESCRIPTORS[i % len(HELDOUT_DESCRIPTORS)]}"
            for i, s in enumerate(chosen)
        ]
        described_u8 = np.round(
            pipe.generate(described, seed=seed, batch_size=batch_size) * 255
        ).astype(np.uint8)  # [n, H, W, 3]
        figures["t2i_top1_descriptor"], described_pred = judge_top1(
            scorer, described_u8, ids, subjects
        )
        top1 = figures["t2i_top1"]
        figures["t2i_descriptor_ratio"] = _ratio(figures["t2i_top1_descriptor"], top1)
        figures["t2i_top1_by_descriptor"] = top1_by_descriptor(ids, described_pred)
        named["t2i_descriptor"] = _hits(ids, described_pred)
        log("base text-to-image with the world's training styles")
        styled, styles = world_style_prompts(chosen)
        styled_u8 = np.round(pipe.generate(styled, seed=seed, batch_size=batch_size) * 255).astype(
            np.uint8
        )  # [n, H, W, 3]
        figures["t2i_top1_world_style"], styled_pred = judge_top1(scorer, styled_u8, ids, subjects)
        figures["t2i_world_style_ratio"] = _ratio(figures["t2i_top1_world_style"], top1)
        named["t2i_world_style"] = _hits(ids, styled_pred)
        figures["t2i_top1_by_world_style_kind"] = top1_by_group(
            [style.kind for style in styles], ids, styled_pred
        )
    if recognisability:
        log(f"recognisability check: {len(RECOGNISABILITY_PROMPTS)} prompts")
        checked_u8 = np.round(
            pipe.generate(
                list(SAMPLE_PROMPTS),
                num_images_per_prompt=SAMPLES_PER_PROMPT,
                seed=seed,
                batch_size=batch_size,
            )
            * 255
        ).astype(np.uint8)  # [24 * 4, H, W, 3], prompt by prompt
        recognised, checked_captions = named_by_judge(
            scorer, checked_u8, RECOGNISABILITY_PROMPTS, subjects, SAMPLES_PER_PROMPT
        )
        figures |= recognised
        grid_path = Path(html_path).with_name(f"{Path(html_path).stem}-recognisability.png")
        save_image(make_grid(checked_u8, columns=2 * SAMPLES_PER_PROMPT), grid_path)
    manifest_path = zoo / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        figures["zoo_bytes"] = manifest.get("bytes")
        figures["data_recipe_version"] = manifest.get("data_recipe_version")

    report.paragraph(f"Zoo: {zoo.name}; dataset: {data_dir.name}; seed {seed}.")
    report.table(
        ["figure", "value"],
        [[k, v] for k, v in figures.items() if not isinstance(v, dict)]
        + [[f"judge_top1 {k}", v] for k, v in by_style.items()]
        + [
            [f"judge named '{k}'", f"{v} of {SAMPLES_PER_PROMPT}"]
            for k, v in figures.get("recognisability_judge_by_prompt", {}).items()
        ],
    )
    report.heading("Text to image: 'a <subject>' (caption: subject, and the judge's guess)")
    report.figures(images_u8, _captions(ids, t2i_pred))
    if descriptors:
        report.heading("The same prompts with a held-out style descriptor appended")
        report.figures(described_u8, _prompt_captions(described, ids, described_pred))
        report.heading("The same prompts with one of the world's training styles appended")
        report.figures(styled_u8, _prompt_captions(styled, ids, styled_pred))
    if recognisability:
        report.heading(
            f"Recognisability check ({SAMPLES_PER_PROMPT} samples per prompt; grid:"
            f" {grid_path.name}, two prompts per row)"
        )
        report.figures(checked_u8, checked_captions)
    report.heading("VQ: eval renders (top) and their reconstructions (bottom)")
    report.figures(eval_images[shown], [truth[i] for i in shown])
    report.figures(reconstructed[shown])
    report.heading("Judge on real renders (eval split)")
    picks = spread(range(len(eval_images)), 24)
    report.figures(eval_images[picks], _captions([truth[i] for i in picks],
                                                 [eval_pred[i] for i in picks]))  # fmt: skip
    for style, images, names, predicted in held_examples:
        report.heading(f"Judge on the held-out style '{style}'")
        report.figures(images, _captions(names, predicted))
    report.write(html_path)
    if json_path is not None:
        record = {
            "format": REPORT_RECORD_FORMAT, "zoo": str(zoo), "seed": seed,
            "figures": figures, "subjects": ids, "named": named,
        }  # fmt: skip
        Path(json_path).write_text(json.dumps(record, indent=1, sort_keys=True))
    return figures


def _hits(truth: Sequence[str], predicted: Sequence[str]) -> list[int]:
    """1 where the judge named the asked subject, else 0."""
    return [int(p == t) for p, t in zip(predicted, truth, strict=True)]
