"""Iterative training with feedback: round 1, a candidate pool, selection, round 2.

`run_rounds` repeats the paper's experiment end to end:
1. round 1: a round-1 adapter on the style image(s);
2. pool: the round-1 model draws K images for each of the 30 round prompts;
3. selection: CLIP feedback (per prompt, the best text score; optionally the best few)
   and, as the control, the same number of images at random;
4. round 2: a new adapter (the round-2 kind: bottleneck 32, not shared) on each selection,
   trained on (image, content prompt + descriptor) pairs;
5. evaluation of the base with the descriptor only, round 1, round 2 CLIP and round 2
   random on a prompt set, in the paper's table shape.
Every stage writes its files under one folder, so a stage that finished is not redone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from adapters import AdapterSpec
from feedback.scorer import ClipScorer
from feedback.selection import Candidate, clip_best_per_prompt, random_selection
from muse import checkpoint as model_checkpoint
from styledrop.dataset import StyleExample
from styledrop.evaluation import BASE_METHOD, Evaluation, Method, draw, evaluate
from styledrop.finetune import ADAPTER_FILE, FinetuneConfig, Progress, finetune
from styledrop.guidance import folder_guidance
from styledrop.images import save_image
from styledrop.prompt_sets import PromptSet, round_prompts

POOL_DIR = "pool"
CANDIDATES_FILE = "candidates.json"
SETTINGS_FILE = "rounds_settings.json"


@dataclass(frozen=True)
class RoundsConfig:
    """Settings of a feedback experiment.

    Attributes:
        round1_steps: Round-1 fine-tuning steps.
        round1_lr: Round-1 learning rate (None: the adapter kind's default).
        round1_adapter: Round-1 adapter kind (paper: r1).
        round2_steps: Round-2 fine-tuning steps.
        round2_lr: Round-2 learning rate (None: the kind's default).
        round2_adapter: Round-2 adapter kind (paper: r2, bottleneck 32, not shared).
        pool_images_per_prompt: K, images per round prompt in the pool (paper: 64).
        eval_images_per_prompt: n, images per evaluation prompt (paper: 8).
        seed: Seed of training and sampling.
        lambda_a: StyleDrop guidance towards the style.
        lambda_b: StyleDrop classifier-free guidance (None: the base's, else the paper's 5;
            the stages' settings record the value used).
        content_first: The fraction of decoding steps the adapters' draws give the content
            prompt alone (`styledrop.guidance.GuidanceScales`; None: the base's, else 0;
            recorded as lambda_B is).
        dtype: The base model's compute dtype in every stage (float32 or bfloat16).
        pool_temperature: MaskGIT choice temperature of the pool's draws (None: the base's).
        pool_token_temperature: Softmax temperature of the pool's token draws (None: the
            base's). The zoo samples near its modes (1 and 0.5); the paper's MaskGIT
            settings (4.5 and 1) give feedback more varied candidates to choose from.
        picks_per_prompt: Images CLIP feedback keeps per round prompt (paper: 1, i.e. 30
            images); the random control takes as many.
    """

    round1_steps: int = 1000
    round1_lr: float | None = None
    round1_adapter: str = "r1"
    round2_steps: int = 1000
    round2_lr: float | None = None
    round2_adapter: str = "r2"
    pool_images_per_prompt: int = 8
    eval_images_per_prompt: int = 8
    seed: int = 0
    lambda_a: float = 1.0
    lambda_b: float | None = None
    content_first: float | None = None
    dtype: str = "float32"
    pool_temperature: float | None = None
    pool_token_temperature: float | None = None
    picks_per_prompt: int = 1

    def __post_init__(self):
        if self.picks_per_prompt < 1 or self.picks_per_prompt > self.pool_images_per_prompt:
            raise ValueError(
                f"picks_per_prompt must be in [1, pool_images_per_prompt ="
                f" {self.pool_images_per_prompt}], got {self.picks_per_prompt}."
            )


def stage_settings(
    base: Path, examples: Sequence[StyleExample], descriptor: str, config: RoundsConfig
) -> dict:
    """What the cached stages (adapters, pool, selections) are built from.

    The evaluation is redone on every run, so its size is not part of it.
    """
    values = asdict(config)
    values.pop("eval_images_per_prompt")
    scales = folder_guidance(base, config.lambda_a, config.lambda_b, config.content_first)
    values["lambda_b"] = scales.lambda_b
    values["content_first"] = scales.content_first
    sampling = model_checkpoint.read_model_config(base).sampling
    for key, own in (("pool_temperature", sampling.temperature),
                     ("pool_token_temperature", sampling.token_temperature)):  # fmt: skip
        value = own if values[key] is None else values[key]
        values[key] = list(value) if isinstance(value, tuple) else value  # as JSON reads it
    return {
        **values,
        "base_sha256": model_checkpoint.base_model_hash(base),
        "descriptor": descriptor,
        "style_images": [
            [hashlib.sha256(np.ascontiguousarray(e.pixels).tobytes()).hexdigest(), e.caption]
            for e in examples
        ],
    }


def check_stage_settings(out_dir: Path, settings: dict) -> None:
    """Records the stages' settings in out_dir, or refuses a folder made with others.

    Raises:
        ValueError: out_dir holds stages built from other settings (they would be reused).
    """
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n")
        return
    recorded = json.loads(path.read_text())
    recorded.setdefault("dtype", "float32")  # folders older than the setting used float32
    recorded.setdefault("picks_per_prompt", 1)  # older folders kept the paper's one
    for key in ("pool_temperature", "pool_token_temperature"):  # older: the base's, as now
        recorded.setdefault(key, settings.get(key))
    changed = sorted(
        k for k in settings.keys() | recorded.keys() if settings.get(k) != recorded.get(k)
    )
    if changed:
        raise ValueError(
            f"{out_dir} holds a rounds experiment made with other settings ({', '.join(changed)});"
            " its finished stages would be reused as they are. Rerun with the same settings,"
            " or give a new output folder."
        )


def _train(
    base: Path,
    examples: Sequence[StyleExample],
    descriptor: str,
    kind: str,
    steps: int,
    lr: float | None,
    round_: int,
    seed: int,
    out_dir: Path,
    on_step: Callable[[Progress], None] | None,
    dtype: str,
) -> Path:
    """Fits one adapter (resuming, or skipping a finished run) and returns its file."""
    import muse

    path = out_dir / ADAPTER_FILE
    if path.is_file():
        return path
    config = FinetuneConfig(
        adapter=AdapterSpec(kind=kind), steps=steps, learning_rate=lr, seed=seed, round=round_
    )
    result = finetune(
        muse.load(base, dtype=dtype), examples, descriptor, config, out_dir, progress=on_step
    )
    if result.adapter_path is None:
        raise RuntimeError(f"Fine-tuning in {out_dir} ended {result.status}.")
    return result.adapter_path


def build_pool(
    base: Path,
    adapter: Path,
    prompts: PromptSet,
    descriptor: str,
    images_per_prompt: int,
    seed: int,
    scorer: ClipScorer,
    references: np.ndarray,
    out_dir: Path,
    lambda_a: float = 1.0,
    lambda_b: float | None = None,
    dtype: str = "float32",
    temperature: float | None = None,
    token_temperature: float | None = None,
    content_first: float | None = None,
) -> list[Candidate]:
    """Draws the candidate pool, scores it, and writes PNGs + candidates.json.

    The decoding temperatures and `content_first` left None are the base's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / CANDIDATES_FILE
    if listing.is_file():
        return [Candidate(**entry) for entry in json.loads(listing.read_text())]
    method = Method("round 1", adapter)
    images = draw(base, method, prompts.prompts, descriptor, images_per_prompt, seed,
                  lambda_a, lambda_b, dtype=dtype, temperature=temperature,
                  token_temperature=token_temperature, content_first=content_first)  # fmt: skip
    content = [p for p in prompts.prompts for _ in range(images_per_prompt)]
    text = scorer.text_scores(images, content)
    style = scorer.style_scores(images, references)
    candidates = []
    for row, image in enumerate(images):
        name = f"{row // images_per_prompt:03d}-{row % images_per_prompt:03d}.png"
        save_image(image, out_dir / name)
        candidates.append(Candidate(name, content[row], float(text[row]), float(style[row])))
    listing.write_text(json.dumps([asdict(c) for c in candidates], indent=2) + "\n")
    return candidates


def selection_examples(pool_dir: Path, selected: Sequence[Candidate]) -> list[StyleExample]:
    """Round-2 training examples: each selected image with its content prompt."""
    from styledrop.inputs import load_images

    images = load_images([pool_dir / c.id for c in selected], max_images=len(selected))
    return [
        StyleExample(image.pixels, candidate.prompt, image.name, image.sha256)
        for image, candidate in zip(images, selected, strict=True)
    ]


def selection_figures(
    pool_dir: Path,
    candidates: Sequence[Candidate],
    selections: dict[str, Sequence[Candidate]],
    prompts: PromptSet,
    scorer: ClipScorer,
    reference_caption: str | None = None,
) -> dict[str, dict[str, float]]:
    """What the pool holds and what each selection took from it.

    Args:
        pool_dir: The pool's folder (the candidates' PNGs).
        candidates: The whole pool.
        selections: Name -> the candidates it picked ("clip", "random").
        prompts: The pool's prompt set (its world subjects, where known).
        scorer: The CLIP that names each image's subject zero-shot over the vocabulary.
        reference_caption: The style image's content ("a house"), for leakage.

    Returns:
        "pool" and each selection -> images, mean text and style scores, `leakage` (with a
        reference caption: the fraction of images closer to it than to their own prompt,
        the evaluation's measure) and, where the prompts are world subjects,
        `subject_named`, the fraction whose subject the scorer names: is there content in
        the pool for feedback to select, and did the selection leave the reference's out?
    """
    from feedback.metrics import leakage_flags
    from styledrop.inputs import load_images
    from styledrop.zoo.naming import named_flags

    subject_of = dict(zip(prompts.prompts, prompts.subjects, strict=True))
    truth = [subject_of.get(c.prompt) for c in candidates]
    world_subjects = any(subject is not None for subject in truth)
    named = leaked = None
    if world_subjects or reference_caption is not None:
        images = load_images([pool_dir / c.id for c in candidates], max_images=len(candidates))
        pixels = np.stack([image.pixels for image in images])  # [N, H, W, 3] uint8
        if world_subjects:
            named = named_flags(scorer, pixels, truth)
        if reference_caption is not None:
            own = scorer.text_scores(pixels, [reference_caption] * len(pixels))
            leaked = leakage_flags(np.array([c.text_score for c in candidates]), own)
    row_of = {c.id: row for row, c in enumerate(candidates)}
    out = {}
    for name, chosen in {"pool": candidates, **selections}.items():
        rows = [row_of[c.id] for c in chosen]
        figures = {
            "images": float(len(rows)),
            "text": float(np.mean([candidates[r].text_score for r in rows])),
            "style": float(np.mean([candidates[r].style_score for r in rows])),
        }
        if leaked is not None:
            figures["leakage"] = float(np.mean(leaked[rows]))
        if named is not None:
            figures["subject_named"] = float(np.nanmean(named[rows]))
        out[name] = figures
    return out


def run_rounds(
    base: str | Path,
    examples: Sequence[StyleExample],
    descriptor: str,
    out_dir: str | Path,
    scorer: ClipScorer,
    eval_prompts: PromptSet,
    config: RoundsConfig = RoundsConfig(),
    *,
    reference_caption: str,
    heldout_style: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
    on_step: Callable[[Progress], None] | None = None,
) -> Evaluation:
    """Round 1 -> pool -> CLIP and random selection -> round 2 (both) -> evaluation.

    Args:
        base: The base model folder.
        examples: The style image(s) with their content captions.
        descriptor: The style descriptor.
        out_dir: Where every stage writes (reruns skip finished stages; a folder made with
            other settings is refused).
        scorer: CLIP for feedback and evaluation.
        eval_prompts: The evaluation prompt set.
        config: Steps, rates and sizes.
        reference_caption: The content of the style image (for leakage).
        heldout_style: Emoji-world held-out style with ground truth, if any.
        log: Receives a line per stage.
        on_step: Fine-tuning progress.

    Returns:
        The evaluation of the four methods (also written to out_dir/evaluation.json).

    Raises:
        ValueError: out_dir holds stages made with other settings.
    """
    from styledrop.evaluation import write_html, write_json

    base, out_dir = Path(base), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_stage_settings(out_dir, stage_settings(base, examples, descriptor, config))
    references = np.stack([e.pixels for e in examples])
    c = config
    log("round 1: fitting the round-1 adapter")
    round1 = _train(base, examples, descriptor, c.round1_adapter, c.round1_steps, c.round1_lr,
                    1, c.seed, out_dir / "round1", on_step, c.dtype)  # fmt: skip
    log(f"pool: {c.pool_images_per_prompt} images for each of 30 prompts")
    pool_dir = out_dir / POOL_DIR
    candidates = build_pool(
        base, round1, round_prompts(), descriptor, c.pool_images_per_prompt, c.seed, scorer,
        references, pool_dir, c.lambda_a, c.lambda_b, c.dtype, c.pool_temperature,
        c.pool_token_temperature, content_first=c.content_first,
    )  # fmt: skip
    chosen = clip_best_per_prompt(candidates, c.picks_per_prompt)
    control = random_selection(candidates, len(chosen), seed=c.seed)
    selections = {"clip": chosen, "random": control}
    (out_dir / "selections.json").write_text(
        json.dumps({k: [x.id for x in v] for k, v in selections.items()}, indent=2) + "\n"
    )
    round2 = {}
    for name, selected in selections.items():
        log(f"round 2 ({name} feedback): {len(selected)} images")
        round2[name] = _train(
            base, selection_examples(pool_dir, selected), descriptor, c.round2_adapter,
            c.round2_steps, c.round2_lr, 2, c.seed, out_dir / f"round2_{name}", on_step, c.dtype,
        )  # fmt: skip
    methods = [
        Method(BASE_METHOD),
        Method("round 1", round1),
        Method("round 2 CLIP feedback", round2["clip"]),
        Method("round 2 random", round2["random"]),
    ]
    evaluation = evaluate(
        base, methods, eval_prompts, descriptor, references, reference_caption, scorer,
        images_per_prompt=c.eval_images_per_prompt, seed=c.seed + 1, lambda_a=c.lambda_a,
        lambda_b=c.lambda_b, content_first=c.content_first, heldout_style=heldout_style,
        dtype=c.dtype, log=log,
    )  # fmt: skip
    # The paper's claims: round 1 adds style; CLIP feedback adds text over round 1 and over
    # a random selection of the same size.
    evaluation.comparisons = [
        ("round 1", BASE_METHOD),
        ("round 2 CLIP feedback", "round 1"),
        ("round 2 CLIP feedback", "round 2 random"),
    ]
    evaluation.provenance["rounds_config"] = asdict(config)
    evaluation.provenance["pool_candidates"] = len(candidates)
    evaluation.provenance["selected"] = {k: len(v) for k, v in selections.items()}
    evaluation.provenance["feedback_selection"] = selection_figures(
        pool_dir, candidates, selections, round_prompts(), scorer, reference_caption
    )
    write_json(evaluation, out_dir / "evaluation.json")
    write_html(evaluation, out_dir / "evaluation.html", references)
    return evaluation
