"""The CLIP consistency evaluation of the StyleDrop paper, for one or several methods.

A method is the base with the style descriptor only, or an adapter file sampled with
StyleDrop guidance. Each draws n images per prompt of a prompt set (same seeds for every
method); the scorer gives each image a text score (against its content prompt), a style
score (against the reference images) and a leakage flag (closer to the reference's own
content caption than to its prompt). Where the prompts are emoji-world subjects (the
world, rounds and mapped Parti sets on the embedded zoo), the scorer also names each
image's subject zero-shot over the whole vocabulary ("subject named": 1 when it names the
prompt's subject, so its mean is the zero-shot top-1). Where the style has ground truth (a
held-out style of the emoji world) each image is also scored against the true rendering of
its prompt's subject in that style. Results: mean and standard error per method,
differences between methods paired by prompt (the test of "B beats A"), image grids, and
the provenance needed to reproduce them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feedback.html_report import HtmlReport
from feedback.metrics import leakage_flags, mean_stderr, paired_difference, prompt_means
from feedback.scorer import ClipScorer
from muse import checkpoint as model_checkpoint
from styledrop.prompt_sets import PromptSet

BASE_METHOD = "base + descriptor"
# Table headers of the per-image scores, in table order.
SCORE_HEADERS = {
    "text": "text score",
    "style": "style score",
    "leakage": "leakage",
    "style_truth": "style vs ground truth",
    "subject_named": "subject named",
}


@dataclass(frozen=True)
class Method:
    """What draws the images: the base (adapter None) or an adapter file."""

    name: str
    adapter: Path | None = None


@dataclass
class MethodResult:
    """One method's per-image scores and images."""

    name: str
    images: np.ndarray  # uint8 [P * n, H, W, 3], grouped by prompt
    text: np.ndarray  # [P * n]
    style: np.ndarray  # [P * n]
    leaked: np.ndarray  # bool [P * n]
    style_truth: np.ndarray | None = None  # [P * n], NaN where no ground truth
    subject_named: np.ndarray | None = None  # [P * n] 1/0, NaN where no world subject
    adapter_sha256: str = ""

    def columns(self) -> dict[str, np.ndarray]:
        """Every per-image score by name, [P * n] float64 (NaN: no ground truth)."""
        out = {"text": self.text, "style": self.style, "leakage": self.leaked}
        if self.subject_named is not None:
            out["subject_named"] = self.subject_named
        if self.style_truth is not None:
            out["style_truth"] = self.style_truth
        return {key: np.asarray(values, np.float64) for key, values in out.items()}

    def summary(self) -> dict[str, float]:
        """Means and standard errors of every score."""
        out: dict[str, float] = {}
        for key, values in self.columns().items():
            values = values[~np.isnan(values)]
            out[key], out[f"{key}_stderr"] = mean_stderr(values)
        out["images"] = float(len(self.text))
        return out

    def per_prompt(self, images_per_prompt: int) -> dict[str, list[float | None]]:
        """Each score's mean per prompt, [P] (None where a prompt has no score)."""
        out = {}
        for key, values in self.columns().items():
            means = prompt_means(values, images_per_prompt)  # [P]
            out[key] = [None if np.isnan(v) else float(v) for v in means]
        return out


@dataclass
class Evaluation:
    """Everything an evaluation produced."""

    prompt_set: PromptSet
    methods: list[MethodResult]
    provenance: dict = field(default_factory=dict)
    comparisons: list[tuple[str, str]] = field(default_factory=list)  # (a, b): a - b

    def method(self, name: str) -> MethodResult:
        """The result of the method called `name`."""
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(f"No method {name!r}; have {[m.name for m in self.methods]}.")

    def compare(self, a: str, b: str) -> dict[str, float]:
        """Method a minus method b on every score, paired by prompt (`paired_difference`)."""
        n = int(self.provenance["images_per_prompt"])
        first, second = self.method(a).columns(), self.method(b).columns()
        out: dict[str, float] = {}
        for key in first.keys() & second.keys():
            out[key], out[f"{key}_stderr"] = paired_difference(first[key], second[key], n)
        return out

    def comparison_table(self) -> list[list[str]]:
        """A header row, then rows "a − b" with each score's paired difference ± error."""
        rows = [["comparison", *self.headers()[1:]]]
        for a, b in self.comparisons:
            d = self.compare(a, b)
            rows.append([f"{a} − {b}", *[f"{d[k]:+.3f} ± {d[k + '_stderr']:.3f}"
                                         for k in self.score_keys()]])  # fmt: skip
        return rows

    def table(self) -> list[list]:
        """Rows: method, then each score (`score_keys`) as mean ± standard error."""
        rows = []
        for method in self.methods:
            s = method.summary()
            rows.append([method.name, *[f"{s[k]:.3f} ± {s[k + '_stderr']:.3f}"
                                        for k in self.score_keys()]])  # fmt: skip
        return rows

    def score_keys(self) -> list[str]:
        """The scores every method has, in table order (those all methods share)."""
        if not self.methods:
            return ["text", "style", "leakage"]
        keys = [key for key in SCORE_HEADERS if key in self.methods[0].columns()]
        return [key for key in keys if all(key in m.columns() for m in self.methods)]

    def headers(self) -> list[str]:
        return ["method", *[SCORE_HEADERS[key] for key in self.score_keys()]]

    def to_json(self) -> dict:
        return {
            "prompt_set": {
                "name": self.prompt_set.name,
                "prompts": list(self.prompt_set.prompts),
                "sources": list(self.prompt_set.sources),
                "note": self.prompt_set.note,
            },
            "methods": {m.name: m.summary() for m in self.methods},
            "comparisons": {f"{a} - {b}": self.compare(a, b) for a, b in self.comparisons},
            "per_prompt": {
                m.name: m.per_prompt(int(self.provenance["images_per_prompt"]))
                for m in self.methods
            },
            "provenance": self.provenance,
        }


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def draw(
    base: Path,
    method: Method,
    prompts: Sequence[str],
    descriptor: str,
    images_per_prompt: int,
    seed: int,
    lambda_a: float | None = None,
    lambda_b: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    dtype: str = "float32",
    temperature: float | tuple[float, float] | None = None,
    token_temperature: float | None = None,
    content_first: float | None = None,
) -> np.ndarray:
    """uint8 [len(prompts) * n, H, W, 3]: one method's images (a fresh base per method).

    `dtype` is the base model's compute dtype (float32 or bfloat16); lambdas and
    `content_first` left None are the base's (`styledrop.guidance.model_guidance`; an
    adapter's draws only), and so are the decoding temperatures
    left None (choice `temperature`, `token_temperature`; `muse.pipeline.DecodeConfig`).
    """
    import muse
    from styledrop.adapted import attach_adapter, generate_styled
    from styledrop.guidance import model_guidance
    from styledrop.terms import with_descriptor

    pipe = muse.load(base, dtype=dtype)
    if method.adapter is None:
        images = pipe.generate(
            [with_descriptor(p, descriptor) for p in prompts],
            num_images_per_prompt=images_per_prompt, seed=seed, progress=progress,
            temperature=temperature, token_temperature=token_temperature,
        )  # fmt: skip
    else:
        style = attach_adapter(pipe, method.adapter)
        images = generate_styled(
            pipe, style, list(prompts), num_images_per_prompt=images_per_prompt, seed=seed,
            scales=model_guidance(pipe.config.sampling, lambda_a, lambda_b, content_first),
            progress=progress,
            temperature=temperature, token_temperature=token_temperature,
        )  # fmt: skip
    return _to_uint8(images)


def ground_truth_images(style: str, subjects: Sequence[str | None]) -> list[np.ndarray | None]:
    """The true rendering of each subject in a held-out emoji-world style (None if none)."""
    from styledrop.zoo.draws import heldout_references

    known = sorted({s for s in subjects if s is not None})
    images, records = heldout_references(style, known)
    by_subject = {r["subject"]: image for r, image in zip(records, images, strict=True)}
    return [by_subject.get(s) if s is not None else None for s in subjects]


def score_method(
    scorer: ClipScorer,
    name: str,
    images: np.ndarray,
    content_prompts: Sequence[str],
    references: np.ndarray,
    reference_caption: str,
    truths: Sequence[np.ndarray | None] | None = None,
    subjects: Sequence[str | None] | None = None,
) -> MethodResult:
    """Text, style, leakage (and ground-truth style, subject named) scores of one method.

    Args:
        scorer: The CLIP scorer.
        name: The method's name.
        images: uint8 [N, H, W, 3].
        content_prompts: The content prompt of each image.
        references: uint8 [R, H, W, 3] style references.
        reference_caption: The references' content caption (for leakage).
        truths: Each image's ground-truth rendering in the style (None where none).
        subjects: Each image's world subject id (None where none): the scorer names each
            image's subject over the vocabulary (`styledrop.zoo.naming.named_flags`).
    """
    from styledrop.zoo.naming import named_flags

    text = scorer.text_scores(images, content_prompts)
    style = scorer.style_scores(images, references)
    own = scorer.text_scores(images, [reference_caption] * len(images))
    leaked = leakage_flags(text, own)
    truth_scores = None
    if truths is not None:
        truth_scores = np.full(len(images), np.nan, np.float32)
        for row, truth in enumerate(truths):
            if truth is not None:
                truth_scores[row] = scorer.style_scores(images[row : row + 1], truth[None])[0]
    named = None
    if subjects is not None and any(s is not None for s in subjects):
        named = named_flags(scorer, images, subjects)
    return MethodResult(name, images, text, style, leaked, truth_scores, named)


def evaluate(
    base: str | Path,
    methods: Sequence[Method],
    prompt_set: PromptSet,
    descriptor: str,
    references: np.ndarray,
    reference_caption: str,
    scorer: ClipScorer,
    *,
    images_per_prompt: int = 8,
    seed: int = 0,
    lambda_a: float | None = None,
    lambda_b: float | None = None,
    content_first: float | None = None,
    heldout_style: str | None = None,
    dtype: str = "float32",
    temperature: float | tuple[float, float] | None = None,
    token_temperature: float | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> Evaluation:
    """Draws and scores every method on the prompt set.

    Args:
        base: The base model folder.
        methods: What to compare.
        prompt_set: Content prompts (the descriptor is added for drawing, not scoring).
        descriptor: The style descriptor.
        references: uint8 [R, H, W, 3] style reference images.
        reference_caption: Content caption of the reference (for the leakage measure).
        scorer: The CLIP scorer.
        images_per_prompt: n (the paper: 8).
        seed: Sampling seed, the same for every method.
        lambda_a: StyleDrop guidance towards the style (None: the paper's 1).
        lambda_b: StyleDrop classifier-free guidance (None: the base's, else the paper's 5).
        content_first: The fraction of decoding steps an adapter's draws give the content
            prompt alone (`GuidanceScales.content_first`; None: the base's, else 0).
        heldout_style: An emoji-world held-out style name: also score against ground truth.
        dtype: The base model's compute dtype (float32 or bfloat16).
        temperature: MaskGIT choice temperature of every method's draws (None: the base's).
        token_temperature: Softmax temperature of the token draws (None: the base's).
        log: Receives a line per method.

    Returns:
        The evaluation.
    """
    from styledrop.guidance import folder_guidance

    base = Path(base)
    scales = folder_guidance(base, lambda_a, lambda_b, content_first)
    sampling = model_checkpoint.read_model_config(base).sampling
    temperature = sampling.temperature if temperature is None else temperature
    if token_temperature is None:
        token_temperature = sampling.token_temperature
    n = images_per_prompt
    content = [p for p in prompt_set.prompts for _ in range(n)]
    truths = None
    if heldout_style is not None:
        per_prompt = ground_truth_images(heldout_style, prompt_set.subjects)
        truths = [t for t in per_prompt for _ in range(n)]
    subjects = [s for s in prompt_set.subjects for _ in range(n)]
    results = []
    for method in methods:
        log(f"{method.name}: drawing {len(content)} images")
        images = draw(base, method, prompt_set.prompts, descriptor, n, seed, scales.lambda_a,
                      scales.lambda_b, dtype=dtype, temperature=temperature,
                      token_temperature=token_temperature,
                      content_first=scales.content_first)  # fmt: skip
        result = score_method(scorer, method.name, images, content, references,
                              reference_caption, truths, subjects)  # fmt: skip
        if method.adapter is not None:
            result.adapter_sha256 = model_checkpoint.sha256_file(method.adapter)
        results.append(result)
    provenance = {
        "base": str(base.name),
        "base_sha256": model_checkpoint.base_model_hash(base),
        "methods": {r.name: {"adapter_sha256": r.adapter_sha256} for r in results},
        "descriptor": descriptor,
        "reference_caption": reference_caption,
        "references": len(references),
        "images_per_prompt": n,
        "seed": seed,
        "lambda_a": scales.lambda_a,
        "lambda_b": scales.lambda_b,
        "content_first": scales.content_first,
        "temperature": temperature,
        "token_temperature": token_temperature,
        "clip": scorer.name,
        "heldout_style": heldout_style,
        "dtype": dtype,
    }
    # Every method against the first (the base with the descriptor, when it is there).
    comparisons = [(r.name, results[0].name) for r in results[1:]]
    return Evaluation(prompt_set, results, provenance, comparisons)


def write_json(evaluation: Evaluation, path: str | Path) -> Path:
    """Writes the figures and provenance as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation.to_json(), indent=2) + "\n")
    return path


def write_html(
    evaluation: Evaluation, path: str | Path, references: np.ndarray, prompts_shown: int = 8
) -> Path:
    """An HTML report: the score table, the references, and a grid per method."""
    report = HtmlReport("StyleDrop evaluation")
    prov = evaluation.provenance
    report.paragraph(
        f"Prompt set {evaluation.prompt_set.name}: {evaluation.prompt_set.note}."
        f" {prov['images_per_prompt']} images per prompt, seed {prov['seed']}, CLIP"
        f" {prov['clip']}, descriptor {prov['descriptor']!r}. Scores are raw cosines, mean ±"
        " standard error; leakage is the fraction of images closer to the reference's caption"
        f" ({prov['reference_caption']!r}) than to their prompt."
    )
    if "subject_named" in evaluation.score_keys():
        report.paragraph(
            "Subject named: the fraction of images whose subject the CLIP names, zero-shot over"
            " the emoji world's whole vocabulary, as its prompt's subject (top-1)."
        )
    report.table(evaluation.headers(), evaluation.table())
    if evaluation.comparisons:
        report.paragraph(
            "Differences between methods, paired by prompt: the mean over prompts of each"
            " prompt's mean score under the first method minus under the second, ± the"
            " standard error of those per-prompt differences."
        )
        header, *rows = evaluation.comparison_table()
        report.table(header, rows)
    report.figures(list(references), ["reference"] * len(references))
    n = prov["images_per_prompt"]
    prompts = evaluation.prompt_set.prompts[:prompts_shown]
    for method in evaluation.methods:
        report.heading(method.name)
        rows = slice(0, len(prompts) * n)
        shown = [p for p in prompts for _ in range(n)]
        scores = zip(shown, method.text[rows], method.style[rows], strict=True)
        captions = [f"{p} · t {t:.2f} s {s:.2f}" for p, t, s in scores]
        report.figures(list(method.images[rows]), captions)
    report.code(json.dumps(prov, indent=2))
    return report.write(path)
